//! The document capability of components: `nimbus:docs/collections`
//! (`wit/deps/nimbus-docs`) over Nimbus's document service
//! ([`nimbus_core::docs`]), JSON in and out as the REST API takes it.
//!
//! As every capability: added to the linker once ([`add_to_linker`]),
//! configured per version from its grants ([`DocsGrants`]), with state per
//! instance ([`DocsCtx`]) renewed by [`DocsCtx::begin`] per invocation.
//! A collection not in `grants.docs` (a transaction naming one included)
//! is `access-denied`, with a line on the invocation's stderr naming the
//! grant. Every call counts against the invocation's deadline and gives
//! the CPU turn back while it waits.

use crate::bindings::nimbus::docs::collections::{self, Error, Written};
use crate::capture::SinkStream;
use nimbus_api::ErrorCode;
use nimbus_api::docs::{DocWritten, QueryRequest, TxWrite};
use nimbus_core::docs::Docs;
use nimbus_core::store::docs::DocCondition;
use serde_json::Value;
use std::sync::Arc;
use tokio::time::Instant;
use wasmtime::component::{HasData, Linker};

/// What a version may reach: the service and the collections granted.
#[derive(Clone)]
pub(crate) struct DocsGrants {
    pub service: Option<Arc<Docs>>,
    pub namespace: Arc<str>,
    pub collections: Arc<[String]>,
}

/// One instance's state of the capability.
pub(crate) struct DocsCtx {
    grants: DocsGrants,
    deadline: Instant,
    cpu: nimbus_core::fair::CpuTurn,
    stderr: SinkStream,
}

impl DocsCtx {
    pub(crate) fn new(grants: DocsGrants, deadline: Instant, stderr: SinkStream) -> DocsCtx {
        DocsCtx {
            grants,
            deadline,
            cpu: Default::default(),
            stderr,
        }
    }

    /// Starts an invocation: its deadline and CPU turn.
    pub(crate) fn begin(&mut self, deadline: Instant, cpu: nimbus_core::fair::CpuTurn) {
        self.deadline = deadline;
        self.cpu = cpu;
    }

    /// The service, if `collection` is granted.
    fn granted(&mut self, collection: &str) -> Result<Arc<Docs>, Error> {
        let ok = self
            .grants
            .collections
            .iter()
            .any(|c| c == collection || c == "*");
        if !ok {
            let message = format!(
                "collection {collection:?} is not granted to this function: add it to its grants.docs (grants: {{docs: [{collection}]}})"
            );
            self.stderr
                .append(format!("nimbus: {message}\n").as_bytes());
            return Err(Error::AccessDenied(message));
        }
        self.grants
            .service
            .clone()
            .ok_or_else(|| Error::Other("this server has no document service".to_owned()))
    }

    /// Runs a service call within the deadline, without the CPU turn.
    async fn within<T>(
        &self,
        fut: impl Future<Output = nimbus_core::Result<T>>,
    ) -> Result<T, Error> {
        match self
            .cpu
            .without(tokio::time::timeout_at(self.deadline, fut))
            .await
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(error_of(e)),
            Err(_) => Err(Error::Other(
                "the invocation's deadline passed during a document call".to_owned(),
            )),
        }
    }
}

fn error_of(e: nimbus_core::Error) -> Error {
    match e.code {
        ErrorCode::NotFound => Error::NotFound(e.message),
        ErrorCode::PreconditionFailed => Error::ConditionFailed(e.message),
        ErrorCode::BadRequest | ErrorCode::InvalidName | ErrorCode::PayloadTooLarge => {
            Error::Invalid(e.message)
        }
        _ => Error::Other(e.message),
    }
}

/// The service for `collection` and `text` read as JSON.
fn granted_json(
    ctx: &mut DocsCtx,
    collection: &str,
    text: &str,
    what: &str,
) -> Result<(Arc<Docs>, Value), Error> {
    let docs = ctx.granted(collection)?;
    Ok((docs, json(text, what)?))
}

fn json(text: &str, what: &str) -> Result<Value, Error> {
    serde_json::from_str(text).map_err(|e| Error::Invalid(format!("{what} is not JSON: {e}")))
}

fn written(w: DocWritten) -> Written {
    Written {
        id: w.id,
        version: w.version,
    }
}

fn condition(if_version: Option<u64>) -> DocCondition {
    if_version.map_or(DocCondition::Always, DocCondition::Version)
}

struct DocsData;

impl HasData for DocsData {
    type Data<'a> = &'a mut DocsCtx;
}

/// Adds `nimbus:docs/collections` to a linker.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> &mut DocsCtx,
) -> wasmtime::Result<()> {
    collections::add_to_linker::<T, DocsData>(linker, view)
}

type Answer<T> = wasmtime::Result<Result<T, Error>>;

impl collections::Host for &mut DocsCtx {
    async fn get(&mut self, collection: String, id: String) -> Answer<Option<String>> {
        let docs = match self.granted(&collection) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let ns = self.grants.namespace.clone();
        Ok(self
            .within(docs.get(&ns, &collection, &id))
            .await
            .map(|d| d.map(|d| serde_json::to_string(&d).unwrap_or_default())))
    }

    async fn create(&mut self, collection: String, data: String) -> Answer<Written> {
        let (docs, data) = match granted_json(self, &collection, &data, "the document") {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let ns = self.grants.namespace.clone();
        Ok(self
            .within(docs.create(&ns, &collection, None, data))
            .await
            .map(written))
    }

    async fn put(
        &mut self,
        collection: String,
        id: String,
        data: String,
        if_version: Option<u64>,
    ) -> Answer<Written> {
        let (docs, data) = match granted_json(self, &collection, &data, "the document") {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let ns = self.grants.namespace.clone();
        Ok(self
            .within(docs.put(&ns, &collection, &id, data, condition(if_version)))
            .await
            .map(written))
    }

    async fn patch(
        &mut self,
        collection: String,
        id: String,
        patch: String,
        if_version: Option<u64>,
    ) -> Answer<Written> {
        let (docs, patch) = match granted_json(self, &collection, &patch, "the patch") {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let ns = self.grants.namespace.clone();
        Ok(self
            .within(docs.patch(&ns, &collection, &id, patch, condition(if_version)))
            .await
            .map(written))
    }

    async fn delete(
        &mut self,
        collection: String,
        id: String,
        if_version: Option<u64>,
    ) -> Answer<bool> {
        let docs = match self.granted(&collection) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let ns = self.grants.namespace.clone();
        Ok(
            match self
                .within(docs.delete(&ns, &collection, &id, condition(if_version)))
                .await
            {
                Ok(_) => Ok(true),
                Err(Error::NotFound(_)) if if_version.is_none() => Ok(false),
                Err(e) => Err(e),
            },
        )
    }

    async fn query(&mut self, collection: String, query: String) -> Answer<String> {
        let docs = match self.granted(&collection) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let q: QueryRequest = match serde_json::from_str(&query) {
            Ok(q) => q,
            Err(e) => {
                return Ok(Err(Error::Invalid(format!(
                    "the query is not one: {e}; give {{\"where\"?, \"order_by\"?, \"limit\"?, \"cursor\"?, \"count\"?}}"
                ))));
            }
        };
        let ns = self.grants.namespace.clone();
        Ok(self
            .within(docs.query(&ns, &collection, q))
            .await
            .map(|page| serde_json::to_string(&page).unwrap_or_default()))
    }

    async fn transaction(&mut self, writes: String) -> Answer<Vec<Written>> {
        let writes: Vec<TxWrite> = match serde_json::from_str(&writes) {
            Ok(w) => w,
            Err(e) => {
                return Ok(Err(Error::Invalid(format!(
                    "the writes are not a list of {{\"op\", \"collection\", \"id\"?, \"data\"?, \"if_version\"?}}: {e}"
                ))));
            }
        };
        let mut docs = None;
        for w in &writes {
            match self.granted(&w.collection) {
                Ok(d) => docs = Some(d),
                Err(e) => return Ok(Err(e)),
            }
        }
        let Some(docs) = docs else {
            return Ok(Err(Error::Invalid(
                "the transaction holds no writes; give 1 to 100".to_owned(),
            )));
        };
        let ns = self.grants.namespace.clone();
        Ok(self
            .within(docs.transaction(&ns, writes))
            .await
            .map(|done| done.into_iter().map(written).collect()))
    }
}
