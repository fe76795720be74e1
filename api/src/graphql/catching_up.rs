//! `extensions.readModelsCatchingUp`: a mutation whose write committed but whose read models had
//! not caught up within the wait answers from the aggregate's own state instead of failing, and
//! says so here, so that a client knows a query made right now may still show the old state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest,
};
use async_graphql::{Context, Request, Response, ServerResult, Value};

/// The response extension's name.
pub const EXTENSION: &str = "readModelsCatchingUp";

/// Installs [`CatchingUpFlag`] on a schema.
pub struct CatchingUp;

impl ExtensionFactory for CatchingUp {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(CatchingUpFlag::default())
    }
}

/// One request's flag, shared with its resolvers through the request's data.
#[derive(Default, Clone)]
pub struct CatchingUpFlag(Arc<AtomicBool>);

impl CatchingUpFlag {
    fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Marks the current request's answer as built from an aggregate (a no-op outside a request).
pub fn mark(ctx: &Context<'_>) {
    if let Some(flag) = ctx.data_opt::<CatchingUpFlag>() {
        flag.raise();
    }
}

#[async_trait::async_trait]
impl Extension for CatchingUpFlag {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        next.run(ctx, request.data(self.clone())).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        if self.0.load(Ordering::Relaxed) {
            response
                .extensions
                .insert(EXTENSION.to_owned(), Value::Boolean(true));
        }
        response
    }
}
