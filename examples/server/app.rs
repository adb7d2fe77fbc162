//! The memories REST API: routes, handlers and where the API-key layer goes.
//!
//! [`router`] is the bare API. [`app`] wraps the whole router, the fallback
//! included, in an [`ApiKeyLayer`], so an unknown path without a key gets the
//! same 401 as a known one and the route map stays hidden. The layer is built
//! with [`configure_auth`], which exempts the documentation paths, from the
//! keys that [`keys::KeySources`] reads.
//!
//! Inside the layer, a middleware logs the name of the key that
//! authenticated each request at `debug`, and `GET /whoami` returns it.
//!
//! JSON shapes follow the mem0 REST server: create returns
//! `{"results":[{"id","memory","event"}]}`, list and search return
//! `{"results":[...]}`, and errors are `{"detail": "..."}` with a 4xx status.

// The paths are explicit because the integration tests include this file with
// `#[path]`, and rustc looks up the child modules of such a file next to it,
// while `cargo run --example` looks in `app/`.
#[path = "keys.rs"]
pub mod keys;
#[path = "openapi.rs"]
mod openapi;
#[path = "store.rs"]
mod store;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tower_api_key::{ApiKeyLayer, ApiKeyLayerBuilder, KeyName};
use tracing::{debug, info};

pub use store::{Owner, Store};

/// Header that carries the API key, as declared in the OpenAPI document.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// Paths served without a key: the redirect to the docs, the docs page and
/// the OpenAPI document it renders.
pub const PUBLIC_PATHS: [&str; 3] = ["/", "/docs", "/openapi.json"];

/// Number of results `POST /search` returns when the request sets no `limit`.
const DEFAULT_SEARCH_LIMIT: usize = 100;

/// Builds the API over `store`, without authentication.
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/", get(redirect_to_docs))
        .route("/docs", get(openapi::docs_page))
        .route("/openapi.json", get(openapi::document))
        .route(
            "/memories",
            post(create_memories)
                .get(list_memories)
                .delete(delete_memories),
        )
        .route(
            "/memories/{id}",
            get(get_memory).put(update_memory).delete(delete_memory),
        )
        .route("/memories/{id}/history", get(memory_history))
        .route("/search", post(search_memories))
        .route("/reset", post(reset))
        .route("/configure", post(configure))
        .route("/whoami", get(whoami))
        .fallback(not_found)
        .with_state(store)
}

/// Sets the header the OpenAPI document declares and exempts [`PUBLIC_PATHS`]
/// as exact paths.
pub fn configure_auth(builder: ApiKeyLayerBuilder) -> ApiKeyLayerBuilder {
    PUBLIC_PATHS
        .into_iter()
        .fold(builder.header_name(API_KEY_HEADER), |builder, path| {
            builder.exempt(path)
        })
}

/// Builds the API over an empty store, every path behind `layer`.
pub fn app(layer: ApiKeyLayer) -> Router {
    router(Store::default())
        .layer(middleware::from_fn(log_key_name))
        .layer(layer)
}

/// Logs the name of the key that authenticated the request, at `debug`.
/// Runs inside the API-key layer, which inserts the [`KeyName`]. Requests
/// without one (exempt paths, authentication disabled) are not logged.
async fn log_key_name(request: Request, next: Next) -> Response {
    if let Some(name) = request.extensions().get::<KeyName>() {
        debug!(
            method = %request.method(),
            path = request.uri().path(),
            key = %name,
            "request accepted"
        );
    }
    next.run(request).await
}

// ==== request bodies ====

#[derive(Debug, Deserialize)]
struct CreateRequest {
    messages: Vec<Message>,
    #[serde(flatten)]
    owner: Owner,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// One chat message. Its `role` field is accepted and ignored, because every
/// message is stored alike.
#[derive(Debug, Deserialize)]
struct Message {
    content: String,
}

#[derive(Debug, Deserialize)]
struct UpdateRequest {
    text: String,
}

#[derive(Debug, Deserialize)]
struct SearchRequest {
    query: String,
    #[serde(flatten)]
    owner: Owner,
    #[serde(default)]
    limit: Option<usize>,
}

// ==== errors ====

/// A 4xx response with a `{"detail": "..."}` body.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    detail: String,
}

impl ApiError {
    fn bad_request(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }

    fn memory_not_found(id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            detail: format!("Memory {id} not found."),
        }
    }

    fn missing_owner() -> Self {
        Self::bad_request("At least one of user_id, agent_id or run_id is required.")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        debug!(status = %self.status, detail = %self.detail, "request failed");
        (self.status, Json(json!({ "detail": self.detail }))).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self {
            status: rejection.status(),
            detail: rejection.body_text(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self {
            status: rejection.status(),
            detail: rejection.body_text(),
        }
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

// ==== handlers ====

async fn redirect_to_docs() -> Redirect {
    Redirect::temporary("/docs")
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        detail: "Not found.".to_owned(),
    }
}

async fn create_memories(
    State(store): State<Store>,
    request: Result<Json<CreateRequest>, JsonRejection>,
) -> ApiResult {
    let Json(request) = request?;
    let owner = request.owner.normalized();
    if owner.is_empty() {
        return Err(ApiError::missing_owner());
    }
    if request.messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages must contain at least one message.",
        ));
    }
    if request
        .messages
        .iter()
        .any(|message| message.content.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "Each message needs a non-empty content.",
        ));
    }

    let texts = request
        .messages
        .into_iter()
        .map(|message| message.content)
        .collect();
    let added = store.add(&owner, texts, request.metadata);

    let results: Vec<Value> = added
        .iter()
        .map(|memory| json!({ "id": memory.id, "memory": memory.memory, "event": "ADD" }))
        .collect();
    Ok(Json(json!({ "results": results })))
}

async fn list_memories(
    State(store): State<Store>,
    owner: Result<Query<Owner>, QueryRejection>,
) -> ApiResult {
    let owner = required_owner(owner?.0)?;
    Ok(Json(json!({ "results": store.list(&owner) })))
}

async fn get_memory(State(store): State<Store>, Path(id): Path<String>) -> ApiResult {
    let memory = store
        .get(&id)
        .ok_or_else(|| ApiError::memory_not_found(&id))?;
    Ok(Json(json!(memory)))
}

async fn update_memory(
    State(store): State<Store>,
    Path(id): Path<String>,
    request: Result<Json<UpdateRequest>, JsonRejection>,
) -> ApiResult {
    let Json(request) = request?;
    if request.text.trim().is_empty() {
        return Err(ApiError::bad_request("text must not be empty."));
    }

    store
        .update(&id, request.text)
        .ok_or_else(|| ApiError::memory_not_found(&id))?;
    Ok(Json(json!({ "message": "Memory updated." })))
}

async fn memory_history(State(store): State<Store>, Path(id): Path<String>) -> ApiResult {
    let changes = store
        .history(&id)
        .ok_or_else(|| ApiError::memory_not_found(&id))?;
    Ok(Json(json!(changes)))
}

async fn delete_memory(State(store): State<Store>, Path(id): Path<String>) -> ApiResult {
    if !store.delete(&id) {
        return Err(ApiError::memory_not_found(&id));
    }
    Ok(Json(json!({ "message": "Memory deleted." })))
}

async fn delete_memories(
    State(store): State<Store>,
    owner: Result<Query<Owner>, QueryRejection>,
) -> ApiResult {
    let owner = required_owner(owner?.0)?;
    let deleted = store.delete_all(&owner);
    info!(deleted, "memories of one owner deleted");
    Ok(Json(json!({ "message": "Memories deleted." })))
}

async fn search_memories(
    State(store): State<Store>,
    request: Result<Json<SearchRequest>, JsonRejection>,
) -> ApiResult {
    let Json(request) = request?;
    let owner = required_owner(request.owner)?;
    if request.query.trim().is_empty() {
        return Err(ApiError::bad_request("query must not be empty."));
    }

    let limit = request.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
    let results = store.search(&owner, &request.query, limit);
    Ok(Json(json!({ "results": results })))
}

async fn reset(State(store): State<Store>) -> Json<Value> {
    store.reset();
    info!("all memories deleted by POST /reset");
    Json(json!({ "message": "All memories reset." }))
}

/// Accepts any JSON object. The in-memory store has no settings, so the
/// object is validated and acknowledged but not kept.
async fn configure(config: Result<Json<Map<String, Value>>, JsonRejection>) -> ApiResult {
    let Json(config) = config?;

    // Only the top-level names are logged: a configuration may contain
    // credentials for other services.
    let names: Vec<&str> = config.keys().map(String::as_str).collect();
    info!(?names, "configuration received");
    Ok(Json(json!({ "message": "Configuration set." })))
}

/// Returns `{"key": "<name>"}` with the name of the key that authenticated
/// the request, or `{"key": null}` when authentication is disabled and no
/// key was checked.
async fn whoami(name: Option<Extension<KeyName>>) -> Json<Value> {
    let name = name.map(|Extension(name)| name.to_string());
    Json(json!({ "key": name }))
}

fn required_owner(owner: Owner) -> Result<Owner, ApiError> {
    let owner = owner.normalized();
    if owner.is_empty() {
        return Err(ApiError::missing_owner());
    }
    Ok(owner)
}
