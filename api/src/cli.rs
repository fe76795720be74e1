//! The command line: `serve` (default), `migrate`, `token`, `projections rebuild`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use webinar_infra::auth::claims;
use webinar_infra::config::Settings;

use crate::startup::Application;
use crate::{demo, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "webinar",
    version,
    about = "Webinar backend: BigBlueButton lectures streamed to thousands"
)]
pub struct Cli {
    /// A TOML file with settings (environment variables override it).
    #[arg(long, global = true, env = "WEBINAR_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve {
        /// Also register a demo gateway and print tokens for a demo admin, presenter and viewer.
        #[arg(long)]
        demo: bool,
    },
    /// Create the database if needed and apply the migrations.
    Migrate,
    /// Print a bearer token signed with the configured secret.
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        name: String,
        #[arg(long = "affiliation")]
        affiliations: Vec<String>,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Validity in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// The site the person acts in (the `site` claim; without it, the host's site).
        #[arg(long)]
        site: Option<String>,
    },
    /// Read-model maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Generate a realistic history (15 events per webinar) to measure rebuilds and queries.
    History {
        #[command(subcommand)]
        command: HistoryCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run a simulator of BigBlueButton or SIPMediaGW (for trials and tests).
    Sim {
        #[command(subcommand)]
        which: SimCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Append the lives of N webinars (15 events each) to a fresh database.
    Generate {
        #[arg(long, default_value_t = 66_667)]
        webinars: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Every event (secrets redacted) on standard output, in log order, one per line.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Recorded at or after (RFC 3339).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Recorded before (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this aggregate's events.
        #[arg(long)]
        aggregate: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// The BBB API at `/bigbluebutton/api`.
    Bbb {
        #[arg(long, default_value = "127.0.0.1:8101")]
        listen: std::net::SocketAddr,
        /// The shared secret (default: WEBINAR_BBB_SECRET).
        #[arg(long)]
        secret: Option<String>,
    },
    /// A SIPMediaGW launcher serving one stream.
    Sipmediagw {
        #[arg(long, value_enum, default_value = "legacy")]
        api: SimApi,
        #[arg(long, default_value = "127.0.0.1:8100")]
        listen: std::net::SocketAddr,
        /// The bearer token it requires (legacy default: SIPMediaGW's "1234").
        #[arg(long)]
        token: Option<String>,
        /// Streams it holds at once (SIPMediaGW: nproc / CPU_PER_GW; 1 on a 4-vCPU host).
        #[arg(long, default_value_t = 1)]
        slots: usize,
        /// Misbehave: launch-failed, html-500, busy, stop-error, latency=D, start-latency=D,
        /// stop-latency=D, chat-latency=D (D like 35s or 20ms). Repeatable; also settable at
        /// run time with `POST /_sim/faults`.
        #[arg(long = "fault", value_parser = parse_fault)]
        faults: Vec<webinar_infra::sim::sipmediagw::Fault>,
        /// `--api gateway`: the ids of its initialised gateway containers (default `gw0`).
        /// Repeatable; any other `gw_id` is refused, as by the real launcher.
        #[arg(long = "gw-id")]
        gw_ids: Vec<String>,
        /// `--api gateway`: answer as v1.8.4 does (500 for an unknown id's status, no room).
        #[arg(long)]
        v1_8_4: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SimApi {
    Legacy,
    Gateway,
    /// The v1.8 proxy before the containers (`--gw-id`), bearer token.
    Proxy,
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild a read model (all of them without NAME) beside the live one, then swap it in.
    ///
    /// The live model keeps serving; the server may run meanwhile. An interrupted rebuild is
    /// resumed by running this again, or dropped with `discard`.
    Rebuild {
        name: Option<String>,
        /// Drop an interrupted rebuild first instead of resuming it.
        #[arg(long)]
        fresh: bool,
        /// Events per committed batch.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(i64).range(1..))]
        batch_size: i64,
    },
    /// Drop an interrupted rebuild of a read model (all of them without NAME).
    Discard { name: Option<String> },
    /// List the read models, their checkpoints and any interrupted rebuild.
    List,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format, std::io::stderr);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(
        cli.command.unwrap_or(Command::Serve { demo: false }),
        settings,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_fault(text: &str) -> Result<webinar_infra::sim::sipmediagw::Fault, String> {
    text.parse()
}

fn jwt_secret(settings: &Settings) -> anyhow::Result<SecretString> {
    settings.jwt_secret.clone().context(
        "WEBINAR_JWT_SECRET is not set: tokens cannot be signed or checked \
         (set it, or run `webinar serve --demo` for a throw-away secret)",
    )
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve { demo } => serve(settings, demo).await,
        Command::Migrate => {
            webinar_infra::db::prepare(
                &settings.database_url,
                2,
                settings.database_acquire_timeout(),
            )
            .await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Token {
            sub,
            name,
            affiliations,
            groups,
            roles,
            ttl,
            site,
        } => {
            let keys = settings.jwt_keys(&jwt_secret(&settings)?);
            let mut claims = claims(&sub, &name, &affiliations, &groups, &roles, ttl);
            if let Some(site) = site {
                webinar_domain::Site::parse(&site).map_err(|e| anyhow::anyhow!("--site: {e}"))?;
                claims.site = Some(site);
            }
            let token = keys.issue(&claims)?;
            println!("{token}");
            Ok(())
        }
        Command::Projections { command } => projections(settings, command).await,
        Command::Sim { which } => crate::simulate::simulate(settings, which).await,
        Command::History {
            command: HistoryCommand::Generate { webinars },
        } => {
            let pool = webinar_infra::db::prepare(
                &settings.database_url,
                2,
                settings.database_acquire_timeout(),
            )
            .await?;
            let started = std::time::Instant::now();
            let events = crate::history::generate(&pool, webinars).await?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "generated {events} events ({webinars} webinars) in {seconds:.1} s ({:.0} events/s)",
                events as f64 / seconds.max(1e-9)
            );
            Ok(())
        }
        Command::Audit {
            command:
                AuditCommand::Export {
                    format,
                    from,
                    to,
                    aggregate,
                },
        } => {
            let pool = webinar_infra::db::prepare(
                &settings.database_url,
                2,
                settings.database_acquire_timeout(),
            )
            .await?;
            crate::export::export(&pool, format, from, to, aggregate).await
        }
    }
}

async fn serve(mut settings: Settings, demo: bool) -> anyhow::Result<()> {
    let secret = match (&settings.jwt_secret, demo) {
        (Some(secret), _) => secret.clone(),
        (None, true) => demo::random_secret(),
        (None, false) => jwt_secret(&settings)?,
    };
    let simulators = CancellationToken::new();
    let sipmediagw = if demo {
        Some(demo::start_simulators(&mut settings, simulators.clone()).await?)
    } else {
        None
    };
    let app = Application::build(settings, secret).await?;
    if let Some(sipmediagw) = &sipmediagw {
        demo::register_demo_gateway(app.state(), sipmediagw).await?;
        let address = app.local_addr();
        println!("webinar demo at http://{address}/graphql (GraphiQL in a browser)");
        println!(
            "simulated BigBlueButton at {}, simulated SIPMediaGW at {sipmediagw}",
            app.state().settings().bbb_url.as_deref().unwrap_or("?")
        );
        println!("Bearer tokens, valid 12 hours (Authorization: Bearer <token>):");
        for (who, token) in demo::demo_tokens(app.state().jwt())? {
            println!("  {who:<9} {token}");
        }
    }
    let served = app.run_until_stopped().await;
    simulators.cancel();
    served
}

async fn projections(settings: Settings, command: ProjectionsCommand) -> anyhow::Result<()> {
    let pool = webinar_infra::db::prepare(
        &settings.database_url,
        4,
        settings.database_acquire_timeout(),
    )
    .await?;
    match command {
        ProjectionsCommand::List => {
            for projector in webinar_projections::all() {
                let at = webinar_infra::consumer::checkpoint(&pool, projector.name()).await?;
                let pending = webinar_infra::consumer::pending_rebuild(&pool, projector.as_ref())
                    .await?
                    .map(|p| format!("; interrupted rebuild at {}", p.global_position))
                    .unwrap_or_default();
                println!(
                    "{:<24} at global position {} (tables: {}){pending}",
                    projector.name(),
                    at.global_position,
                    projector.tables().join(", ")
                );
            }
            Ok(())
        }
        ProjectionsCommand::Discard { name } => {
            for projector in projectors_named(name.as_deref())? {
                if webinar_infra::consumer::discard_rebuild(&pool, projector.as_ref()).await? {
                    println!("{}: interrupted rebuild dropped", projector.name());
                } else {
                    println!("{}: no rebuild to drop", projector.name());
                }
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild {
            name,
            fresh,
            batch_size,
        } => {
            for projector in projectors_named(name.as_deref())? {
                if fresh {
                    webinar_infra::consumer::discard_rebuild(&pool, projector.as_ref()).await?;
                } else if let Some(at) =
                    webinar_infra::consumer::pending_rebuild(&pool, projector.as_ref()).await?
                {
                    println!(
                        "{}: resuming the rebuild at global position {}",
                        projector.name(),
                        at.global_position
                    );
                }
                // indicatif draws only on a terminal: piped output stays quiet.
                let bar = ProgressBar::new(0).with_style(
                    ProgressStyle::with_template(
                        "{msg:>16} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)",
                    )?
                    .progress_chars("=> "),
                );
                bar.set_message(projector.name());
                let started = std::time::Instant::now();
                let done = webinar_infra::consumer::rebuild(
                    &pool,
                    projector.as_ref(),
                    batch_size,
                    &mut |done, total| {
                        bar.set_length(total.max(done));
                        bar.set_position(done);
                    },
                )
                .await?;
                bar.finish_and_clear();
                let seconds = started.elapsed().as_secs_f64();
                println!(
                    "{}: rebuilt from {done} events in {seconds:.2} s ({:.0} events/s)",
                    projector.name(),
                    done as f64 / seconds.max(1e-9)
                );
            }
            Ok(())
        }
    }
}

/// The projector called `name`, or all of them.
fn projectors_named(
    name: Option<&str>,
) -> anyhow::Result<Vec<std::sync::Arc<dyn webinar_infra::consumer::Projector>>> {
    let Some(name) = name else {
        return Ok(webinar_projections::all());
    };
    let projector = webinar_projections::by_name(name).with_context(|| {
        let known: Vec<_> = webinar_projections::all()
            .iter()
            .map(|p| p.name())
            .collect();
        format!("no read model named {name:?}; known: {}", known.join(", "))
    })?;
    Ok(vec![projector])
}
