//! The permission matrix: every mutation against every kind of caller. Exactly the allowed ones
//! succeed; the others get `UNAUTHENTICATED` (anonymous) or `FORBIDDEN`.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::harness::{error_code, register_gateway, TestApp};

/// Token claims: sub, affiliations, groups, roles.
type Claims = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

/// (name, claims); `None` is anonymous.
const PERSONAS: &[(&str, Option<Claims>)] = &[
    ("anonymous", None),
    ("viewer", Some(("viewer", &["student"], &[], &[]))),
    ("faculty", Some(("faculty", &["faculty"], &[], &[]))),
    ("admin group", Some(("group", &[], &["webinar admin"], &[]))),
    ("owner", Some(("owner", &["faculty"], &[], &[]))),
    ("presenter", Some(("presenter", &["student"], &[], &[]))),
    ("admin", Some(("admin", &[], &[], &["admin"]))),
    ("auditor", Some(("auditor", &[], &[], &["auditor"]))),
    ("analyst", Some(("analyst", &[], &[], &["analyst"]))),
];

/// Which personas each mutation admits.
fn allowed(mutation: &str) -> &'static [&'static str] {
    match mutation {
        "scheduleWebinar" => &["faculty", "admin group", "owner", "admin"],
        "updateWebinar" => &["owner", "presenter", "admin"],
        "startWebinar" => &["owner", "presenter"],
        "stopLive" | "restartLive" | "endWebinar" | "cancelWebinar" => &["owner", "admin"],
        "postChatMessage" => &[
            "viewer",
            "faculty",
            "admin group",
            "owner",
            "presenter",
            "admin",
            "auditor",
            "analyst",
        ],
        _ => &["admin"],
    }
}

const MUTATIONS: &[&str] = &[
    "scheduleWebinar",
    "updateWebinar",
    "startWebinar",
    "stopLive",
    "restartLive",
    "endWebinar",
    "cancelWebinar",
    "postChatMessage",
    "registerGateway",
    "updateGateway",
    "setGatewayEnabled",
    "retireGateway",
];

struct Matrix<'a> {
    app: &'a TestApp,
    owner: String,
    cell: i64,
}

impl Matrix<'_> {
    fn token(&self, persona: &str) -> Option<String> {
        PERSONAS
            .iter()
            .find(|(name, _)| *name == persona)
            .and_then(|(_, claims)| *claims)
            .map(|(sub, affiliations, groups, roles)| {
                self.app.token(sub, affiliations, groups, roles)
            })
    }

    fn slot(&mut self) -> Value {
        self.cell += 1;
        let start = Utc::now() + Duration::days(1) + Duration::hours(2 * self.cell);
        json!(start.to_rfc3339())
    }

    /// A webinar of the owner's, with the presenter, chat on; live when asked.
    async fn webinar(&mut self, live: bool) -> String {
        let start = self.slot();
        let body = self
            .app
            .gql(
                Some(&self.owner),
                "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }",
                json!({ "input": { "title": "Matrix", "startAt": start, "durationMinutes": 60,
                    "enableChat": true, "presenters": [{ "id": "presenter", "name": "P" }] } }),
            )
            .await;
        let id = body["data"]["scheduleWebinar"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned();
        if live {
            let body = self
                .app
                .gql(
                    Some(&self.owner),
                    "mutation($id: ID!) { startWebinar(id: $id) { joinUrl } }",
                    json!({ "id": id }),
                )
                .await;
            assert!(body["errors"].is_null(), "{body}");
        }
        id
    }

    async fn gateway(&mut self) -> String {
        self.cell += 1;
        register_gateway(self.app, &format!("m{}", self.cell), None).await
    }

    /// Runs `mutation` as `persona` against fresh objects; returns the response.
    async fn run(&mut self, mutation: &str, persona: &str) -> Value {
        let (query, variables) = match mutation {
            "scheduleWebinar" => (
                "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }",
                json!({ "input": { "title": "Mine", "startAt": self.slot(), "durationMinutes": 30 } }),
            ),
            "updateWebinar" => (
                "mutation($id: ID!) { updateWebinar(id: $id, input: { title: \"Changed\" }) { id } }",
                json!({ "id": self.webinar(false).await }),
            ),
            "startWebinar" => (
                "mutation($id: ID!) { startWebinar(id: $id) { joinUrl } }",
                json!({ "id": self.webinar(false).await }),
            ),
            "stopLive" => ("mutation($id: ID!) { stopLive(id: $id) { id } }", json!({ "id": self.webinar(true).await })),
            "restartLive" => (
                "mutation($id: ID!) { restartLive(id: $id) { id } }",
                json!({ "id": self.webinar(true).await }),
            ),
            "endWebinar" => (
                "mutation($id: ID!) { endWebinar(id: $id) { id } }",
                json!({ "id": self.webinar(true).await }),
            ),
            "cancelWebinar" => (
                "mutation($id: ID!) { cancelWebinar(id: $id) { id } }",
                json!({ "id": self.webinar(false).await }),
            ),
            "postChatMessage" => (
                "mutation($id: ID!) { postChatMessage(webinarId: $id, text: \"Question?\") { id status } }",
                json!({ "id": self.webinar(true).await }),
            ),
            "registerGateway" => {
                self.cell += 1;
                (
                    "mutation($url: String!) { registerGateway(input: { name: \"g\", rtmpUrl: \"rtmp://h/x\",
                        hlsUrl: \"https://h/x\", broadcaster: \"b\", sipmediagwUrl: $url }) { id } }",
                    json!({ "url": format!("https://matrix-{}.example.org", self.cell) }),
                )
            }
            "updateGateway" => (
                "mutation($id: ID!) { updateGateway(id: $id, input: { name: \"renamed\" }) { id } }",
                json!({ "id": self.gateway().await }),
            ),
            "setGatewayEnabled" => (
                "mutation($id: ID!) { setGatewayEnabled(id: $id, enabled: false) { id } }",
                json!({ "id": self.gateway().await }),
            ),
            "retireGateway" => (
                "mutation($id: ID!) { retireGateway(id: $id) { id } }",
                json!({ "id": self.gateway().await }),
            ),
            other => panic!("no case for {other}"),
        };
        let token = self.token(persona);
        self.app.gql(token.as_deref(), query, variables).await
    }
}

#[tokio::test]
async fn every_mutation_against_every_kind_of_caller() {
    let app = TestApp::spawn_with(|settings| settings.run_reactors = false).await;
    register_gateway(&app, "main", None).await;
    let mut matrix = Matrix {
        app: &app,
        owner: app.token("owner", &["faculty"], &[], &[]),
        cell: 0,
    };
    let mut failures = Vec::new();
    for mutation in MUTATIONS {
        for (persona, _) in PERSONAS {
            let body = matrix.run(mutation, persona).await;
            let expected = if allowed(mutation).contains(persona) {
                None
            } else if *persona == "anonymous" {
                Some("UNAUTHENTICATED")
            } else {
                Some("FORBIDDEN")
            };
            if error_code(&body) != expected {
                failures.push(format!(
                    "{mutation} as {persona}: expected {expected:?}, got {body}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
