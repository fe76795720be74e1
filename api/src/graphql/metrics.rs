//! The duration of every GraphQL operation, by its first root field (`liveEvents`,
//! `scheduleWebinar`, …): a label bounded by the schema, whatever names clients give operations.
//! Only operations that pass validation reach `execute`, so only schema fields become labels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
};
use async_graphql::parser::types::{ExecutableDocument, OperationDefinition, Selection};
use async_graphql::{Response, ServerResult, Variables};
use webinar_infra::metrics::GRAPHQL_DURATION;

/// Installs [`OperationTimer`] on a schema.
pub struct OperationMetrics;

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationTimer::default())
    }
}

/// One request's timer: learns the root fields at parse time, records at the end of execution.
#[derive(Default)]
pub struct OperationTimer {
    /// Operation name (`None` for an anonymous one) → its first root field.
    roots: Mutex<HashMap<Option<String>, String>>,
}

fn first_root_field(operation: &OperationDefinition) -> String {
    match operation.selection_set.node.items.first().map(|s| &s.node) {
        Some(Selection::Field(field)) => field.node.name.node.to_string(),
        Some(_) => "fragment".to_owned(),
        None => "none".to_owned(),
    }
}

#[async_trait::async_trait]
impl Extension for OperationTimer {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let mut roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
        for (name, operation) in document.operations.iter() {
            roots.insert(
                name.map(|n| n.to_string()),
                first_root_field(&operation.node),
            );
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        let root = {
            let roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
            roots
                .get(&operation_name.map(str::to_owned))
                .or_else(|| (roots.len() == 1).then(|| roots.values().next()).flatten())
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned())
        };
        metrics::histogram!(GRAPHQL_DURATION, "operation" => root)
            .record(started.elapsed().as_secs_f64());
        response
    }
}
