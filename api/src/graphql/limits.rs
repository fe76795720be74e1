//! What one GraphQL operation may cost, checked on the parsed document before async-graphql
//! validates it.
//!
//! async-graphql's own checks (recursion depth, directives per field, complexity) walk the
//! document with every fragment spread expanded, so `fragment F2 on Query { ...F1 ...F1 }` nested
//! twenty times costs a million steps before any limit says no. Here each fragment is measured
//! once and its size reused wherever it is spread, so the whole check is linear in the size of
//! the text, and the bomb is refused before anything expands it. Runs for HTTP and WebSocket
//! operations alike (it is a schema extension).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{ErrorExtensions, Name, Positioned, Request, ServerError, ServerResult};

/// The limits, from the settings (README, section Security).
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Longest query text, in bytes.
    pub max_bytes: usize,
    /// Most fields an operation selects once fragments are expanded.
    pub max_fields: usize,
    /// Most aliases in the document.
    pub max_aliases: usize,
    /// Most directives in the document.
    pub max_directives: usize,
    /// Most root fields of one mutation (each is a write).
    pub max_mutations: usize,
}

impl ExtensionFactory for QueryLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_trait::async_trait]
impl Extension for QueryLimits {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if request.query.len() > self.max_bytes {
            return Err(refusal(
                format!("the query is longer than {} bytes", self.max_bytes),
                "max_query_bytes",
            ));
        }
        // Parsed once here; async-graphql reuses the document.
        let document = request.parsed_query()?;
        self.check(document)?;
        next.run(ctx, request).await
    }
}

impl QueryLimits {
    /// Refuses a document over any limit, naming the setting (never quoting the document).
    pub fn check(&self, document: &ExecutableDocument) -> ServerResult<()> {
        let syntax = Syntax::count(document);
        if syntax.aliases > self.max_aliases {
            return Err(refusal(
                format!("the query has more than {} aliases", self.max_aliases),
                "max_query_aliases",
            ));
        }
        if syntax.directives > self.max_directives {
            return Err(refusal(
                format!("the query has more than {} directives", self.max_directives),
                "max_query_directives",
            ));
        }
        let mut sizes = FragmentSizes::new(document);
        for (_, operation) in document.operations.iter() {
            let selection = &operation.node.selection_set;
            let fields = sizes.measure(selection, Depth::All)?;
            if fields > self.max_fields as u64 {
                return Err(refusal(
                    format!(
                        "the query selects more than {} fields once its fragments are expanded",
                        self.max_fields
                    ),
                    "max_query_fields",
                ));
            }
            if operation.node.ty == OperationType::Mutation {
                let writes = sizes.measure(selection, Depth::Root)?;
                if writes > self.max_mutations as u64 {
                    return Err(refusal(
                        format!(
                            "a mutation may make at most {} changes at once",
                            self.max_mutations
                        ),
                        "max_batch_operations",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A refusal with the contract's code and the setting that set the limit.
pub fn refusal(message: String, setting: &'static str) -> ServerError {
    async_graphql::Error::new(message)
        .extend_with(|_, e| {
            e.set("code", "BAD_USER_INPUT");
            e.set("limit", setting);
        })
        .into_server_error(async_graphql::Pos::default())
}

/// Aliases and directives as written (no expansion: a spread repeats neither).
#[derive(Default)]
struct Syntax {
    aliases: usize,
    directives: usize,
}

impl Syntax {
    fn count(document: &ExecutableDocument) -> Self {
        let mut syntax = Self::default();
        for (_, operation) in document.operations.iter() {
            syntax.directives += operation.node.directives.len();
            for variable in &operation.node.variable_definitions {
                syntax.directives += variable.node.directives.len();
            }
            syntax.walk(&operation.node.selection_set.node);
        }
        for fragment in document.fragments.values() {
            syntax.directives += fragment.node.directives.len();
            syntax.walk(&fragment.node.selection_set.node);
        }
        syntax
    }

    fn walk(&mut self, set: &SelectionSet) {
        for selection in &set.items {
            self.directives += selection.node.directives().len();
            match &selection.node {
                Selection::Field(field) => {
                    self.aliases += usize::from(field.node.alias.is_some());
                    self.walk(&field.node.selection_set.node);
                }
                Selection::InlineFragment(inline) => self.walk(&inline.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
}

/// Which fields count: all of them, or only those at the operation's root (its writes, for a
/// mutation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Depth {
    All,
    Root,
}

#[derive(Clone, Copy)]
enum Measured {
    InProgress,
    Done(u64),
}

/// Expanded field counts, each fragment measured once per [`Depth`].
struct FragmentSizes<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    measured: HashMap<(&'a str, Depth), Measured>,
}

impl<'a> FragmentSizes<'a> {
    fn new(document: &'a ExecutableDocument) -> Self {
        Self {
            fragments: &document.fragments,
            measured: HashMap::new(),
        }
    }

    /// Fields `set` selects with its spreads expanded (saturating: a bomb's count only needs to
    /// be known to be too large).
    fn measure(&mut self, set: &'a Positioned<SelectionSet>, depth: Depth) -> ServerResult<u64> {
        let mut total = 0u64;
        for selection in &set.node.items {
            let size = match &selection.node {
                Selection::Field(field) => match depth {
                    Depth::All => {
                        1u64.saturating_add(self.measure(&field.node.selection_set, Depth::All)?)
                    }
                    Depth::Root => 1,
                },
                Selection::InlineFragment(inline) => {
                    self.measure(&inline.node.selection_set, depth)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str(), depth)?
                }
            };
            total = total.saturating_add(size);
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &'a str, depth: Depth) -> ServerResult<u64> {
        // An unknown fragment selects nothing here; validation reports it.
        let Some((key, fragment)) = self.fragments.get_key_value(name) else {
            return Ok(0);
        };
        let key = (key.as_str(), depth);
        match self.measured.get(&key) {
            Some(Measured::Done(size)) => return Ok(*size),
            Some(Measured::InProgress) => {
                return Err(refusal(
                    format!("fragment `{}` spreads itself", truncated(name)),
                    "max_query_fields",
                ))
            }
            None => {}
        }
        self.measured.insert(key, Measured::InProgress);
        let size = self.measure(&fragment.node.selection_set, depth)?;
        self.measured.insert(key, Measured::Done(size));
        Ok(size)
    }
}

/// At most 40 characters of a client's name, so an error never echoes a huge input.
fn truncated(name: &str) -> String {
    let mut short: String = name.chars().take(40).collect();
    if short.len() < name.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QueryLimits = QueryLimits {
        max_bytes: 32 * 1024,
        max_fields: 2_000,
        max_aliases: 100,
        max_directives: 50,
        max_mutations: 10,
    };

    fn check(query: &str) -> Result<(), String> {
        let document = async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?;
        LIMITS.check(&document).map_err(|e| e.message)
    }

    /// `{ ...F<levels> }` where each fragment spreads the one below twice.
    fn fragment_bomb(levels: usize) -> String {
        let mut query = format!("{{ ...F{levels} }}\nfragment F0 on Query {{ __typename }}\n");
        for i in 1..=levels {
            query.push_str(&format!(
                "fragment F{i} on Query {{ ...F{j} ...F{j} }}\n",
                j = i - 1
            ));
        }
        query
    }

    #[test]
    fn a_fragment_bomb_is_measured_without_expanding_it() {
        for levels in [20, 25, 30, 60] {
            let started = std::time::Instant::now();
            let refused = check(&fragment_bomb(levels)).expect_err("a bomb is refused");
            assert!(refused.contains("2000 fields"), "{refused}");
            assert!(started.elapsed() < std::time::Duration::from_millis(50));
        }
        // Small enough: 2^10 = 1024 fields.
        assert_eq!(check(&fragment_bomb(10)), Ok(()));
    }

    #[test]
    fn aliases_directives_cycles_and_mutations_are_bounded() {
        let aliases: String = (0..101).map(|i| format!("a{i}: __typename ")).collect();
        assert!(check(&format!("{{ {aliases} }}"))
            .expect_err("refused")
            .contains("100 aliases"));
        let directives = "@skip(if: false) ".repeat(51);
        assert!(check(&format!("{{ __typename {directives} }}"))
            .expect_err("refused")
            .contains("50 directives"));
        let cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        assert!(check(cycle)
            .expect_err("refused")
            .contains("spreads itself"));
        let writes: String = (0..11)
            .map(|i| format!("w{i}: cancelWebinar(id: \"x\") {{ id }} "))
            .collect();
        assert!(check(&format!("mutation {{ {writes} }}"))
            .expect_err("refused")
            .contains("at most 10 changes"));
        let spread_writes = "mutation { ...W ...W } fragment W on Mutation { \
                             a: cancelWebinar(id: \"x\") { id } b: cancelWebinar(id: \"y\") { id } \
                             c: cancelWebinar(id: \"z\") { id } d: cancelWebinar(id: \"w\") { id } \
                             e: cancelWebinar(id: \"v\") { id } f: cancelWebinar(id: \"u\") { id } }";
        assert!(check(spread_writes).is_err());
        assert_eq!(
            check("query { liveEvents { edges { node { id title } } } }"),
            Ok(())
        );
    }
}
