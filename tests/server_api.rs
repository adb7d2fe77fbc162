//! The memories API of the example server, behind the API-key layer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, Request, StatusCode};
use common::app::{self, Owner, Store};
use common::{Call, KEY, USER, auth_layer, body_json, call, protected_app, seed, send};
use serde_json::{Value, json};
use tower::util::MapRequestLayer;

// ==== the whole flow ====

#[tokio::test]
async fn memory_lifecycle_with_key() {
    let app = protected_app();

    // Create two memories.
    let create = Call::new(Method::POST, "/memories").json(json!({
        "messages": [
            { "role": "user", "content": "likes green tea" },
            { "role": "user", "content": "lives in Lisbon" },
        ],
        "user_id": USER,
        "metadata": { "source": "chat" },
    }));
    let response = call(&app, &create, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let created = body_json(response).await;
    let results = created["results"].as_array().expect("results is a list");
    assert_eq!(results.len(), 2, "{created}");
    assert_eq!(results[0]["memory"], "likes green tea");
    assert_eq!(results[0]["event"], "ADD");
    assert_eq!(results[1]["memory"], "lives in Lisbon");
    assert_eq!(results[1]["event"], "ADD");
    let id = results[0]["id"].as_str().unwrap().to_owned();

    // Read one.
    let get = Call::new(Method::GET, format!("/memories/{id}"));
    let response = call(&app, &get, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let memory = body_json(response).await;
    assert_eq!(memory["id"], id.as_str());
    assert_eq!(memory["memory"], "likes green tea");
    assert_eq!(memory["user_id"], USER);
    assert_eq!(memory["metadata"], json!({ "source": "chat" }));
    assert!(memory["created_at"].is_string(), "{memory}");
    assert!(memory["updated_at"].is_null(), "{memory}");
    assert!(memory.get("agent_id").is_none(), "{memory}");

    // List the owner's memories.
    let list = Call::new(Method::GET, format!("/memories?user_id={USER}"));
    let response = call(&app, &list, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let listed = body_json(response).await;
    assert_eq!(texts(&listed), ["likes green tea", "lives in Lisbon"]);

    // Search, case-insensitively.
    let search =
        Call::new(Method::POST, "/search").json(json!({ "query": "TEA", "user_id": USER }));
    let response = call(&app, &search, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let found = body_json(response).await;
    assert_eq!(texts(&found), ["likes green tea"]);

    // Update, then read the new text.
    let update =
        Call::new(Method::PUT, format!("/memories/{id}")).json(json!({ "text": "likes oolong" }));
    let response = call(&app, &update, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["message"], "Memory updated.");

    let response = call(&app, &get, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let memory = body_json(response).await;
    assert_eq!(memory["memory"], "likes oolong");
    assert!(memory["updated_at"].is_string(), "{memory}");

    // History: the old and the new text.
    let history = Call::new(Method::GET, format!("/memories/{id}/history"));
    let response = call(&app, &history, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let changes = body_json(response).await;
    let changes = changes.as_array().expect("history is a list");
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0]["event"], "ADD");
    assert_eq!(changes[0]["old_memory"], Value::Null);
    assert_eq!(changes[0]["new_memory"], "likes green tea");
    assert_eq!(changes[1]["event"], "UPDATE");
    assert_eq!(changes[1]["memory_id"], id.as_str());
    assert_eq!(changes[1]["old_memory"], "likes green tea");
    assert_eq!(changes[1]["new_memory"], "likes oolong");

    // Delete, then the memory is gone but its history stays.
    let delete = Call::new(Method::DELETE, format!("/memories/{id}"));
    let response = call(&app, &delete, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["message"], "Memory deleted.");

    let response = call(&app, &get, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let response = call(&app, &list, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(texts(&body_json(response).await), ["lives in Lisbon"]);

    let response = call(&app, &history, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let changes = body_json(response).await;
    assert_eq!(changes[2]["event"], "DELETE", "{changes}");
    assert_eq!(changes[2]["old_memory"], "likes oolong");
    assert_eq!(changes[2]["new_memory"], Value::Null);
}

#[tokio::test]
async fn lifecycle_without_key_changes_nothing() {
    let store = Store::default();
    let handler_calls = Arc::new(AtomicUsize::new(0));
    let app = counted_app(store.clone(), handler_calls.clone());
    let id = seed(&app, Some(KEY)).await;
    assert_eq!(
        handler_calls.load(Ordering::SeqCst),
        1,
        "the seeding request"
    );

    let steps = [
        Call::new(Method::POST, "/memories").json(json!({
            "messages": [{ "role": "user", "content": "likes coffee" }],
            "user_id": USER,
        })),
        Call::new(Method::GET, format!("/memories/{id}")),
        Call::new(Method::GET, format!("/memories?user_id={USER}")),
        Call::new(Method::POST, "/search").json(json!({ "query": "tea", "user_id": USER })),
        Call::new(Method::PUT, format!("/memories/{id}")).json(json!({ "text": "likes coffee" })),
        Call::new(Method::GET, format!("/memories/{id}/history")),
        Call::new(Method::DELETE, format!("/memories/{id}")),
        Call::new(Method::DELETE, format!("/memories?user_id={USER}")),
        Call::new(Method::POST, "/configure").json(json!({ "vector_store": "none" })),
        Call::new(Method::POST, "/reset"),
    ];
    for step in &steps {
        let response = call(&app, step, None).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{}",
            step.label()
        );
    }

    assert_eq!(
        handler_calls.load(Ordering::SeqCst),
        1,
        "a rejected request reached the router"
    );
    let owner = Owner {
        user_id: Some(USER.to_owned()),
        ..Owner::default()
    };
    let memories = store.list(&owner);
    assert_eq!(memories.len(), 1);
    assert_eq!(memories[0].id, id);
    assert_eq!(memories[0].memory, "likes green tea");
    assert_eq!(memories[0].updated_at, None);
    assert_eq!(store.history(&id).map(|changes| changes.len()), Some(1));
}

// ==== owner ids ====

#[tokio::test]
async fn create_needs_owner() {
    let app = protected_app();
    let bodies = [
        json!({ "messages": [{ "role": "user", "content": "x" }] }),
        json!({ "messages": [{ "role": "user", "content": "x" }], "user_id": "" }),
    ];

    for body in bodies {
        let create = Call::new(Method::POST, "/memories").json(body.clone());
        let response = call(&app, &create, Some(KEY)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let detail = body_json(response).await["detail"].clone();
        assert!(detail.as_str().unwrap().contains("user_id"), "{detail}");
    }
}

#[tokio::test]
async fn list_needs_owner() {
    let app = protected_app();

    for uri in ["/memories", "/memories?user_id=", "/memories?unrelated=1"] {
        let response = call(&app, &Call::new(Method::GET, uri), Some(KEY)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        let body = body_json(response).await;
        assert!(
            body["detail"].as_str().unwrap().contains("user_id"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn delete_all_needs_owner() {
    let app = protected_app();
    let id = seed(&app, Some(KEY)).await;

    let response = call(&app, &Call::new(Method::DELETE, "/memories"), Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let get = Call::new(Method::GET, format!("/memories/{id}"));
    let response = call(&app, &get, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK, "the memory survives");
}

#[tokio::test]
async fn search_needs_owner() {
    let app = protected_app();
    seed(&app, Some(KEY)).await;

    let search = Call::new(Method::POST, "/search").json(json!({ "query": "tea" }));
    let response = call(&app, &search, Some(KEY)).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn owners_are_kept_apart() {
    let app = protected_app();
    let create = |owner: Value, text: &str| {
        let mut body = json!({ "messages": [{ "role": "user", "content": text }] });
        body.as_object_mut()
            .unwrap()
            .extend(owner.as_object().unwrap().clone());
        Call::new(Method::POST, "/memories").json(body)
    };
    for (owner, text) in [
        (json!({ "user_id": "alice" }), "alice tea"),
        (json!({ "user_id": "bob" }), "bob tea"),
        (json!({ "agent_id": "helper" }), "agent tea"),
        (
            json!({ "user_id": "alice", "run_id": "run-1" }),
            "alice run tea",
        ),
    ] {
        let response = call(&app, &create(owner, text), Some(KEY)).await;
        assert_eq!(response.status(), StatusCode::OK, "{text}");
    }

    let cases = [
        (
            "/memories?user_id=alice",
            vec!["alice tea", "alice run tea"],
        ),
        ("/memories?user_id=bob", vec!["bob tea"]),
        ("/memories?agent_id=helper", vec!["agent tea"]),
        ("/memories?run_id=run-1", vec!["alice run tea"]),
        (
            "/memories?user_id=alice&run_id=run-1",
            vec!["alice run tea"],
        ),
        ("/memories?user_id=carol", vec![]),
    ];
    for (uri, expected) in cases {
        let response = call(&app, &Call::new(Method::GET, uri), Some(KEY)).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert_eq!(texts(&body_json(response).await), expected, "{uri}");
    }

    let search =
        Call::new(Method::POST, "/search").json(json!({ "query": "tea", "user_id": "bob" }));
    let response = call(&app, &search, Some(KEY)).await;
    assert_eq!(texts(&body_json(response).await), ["bob tea"]);
}

#[tokio::test]
async fn delete_all_keeps_other_owners() {
    let app = protected_app();
    seed(&app, Some(KEY)).await;
    let other = Call::new(Method::POST, "/memories").json(json!({
        "messages": [{ "role": "user", "content": "likes rooibos" }],
        "user_id": "bob",
    }));
    assert_eq!(call(&app, &other, Some(KEY)).await.status(), StatusCode::OK);

    let delete_all = Call::new(Method::DELETE, format!("/memories?user_id={USER}"));
    let response = call(&app, &delete_all, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["message"], "Memories deleted.");

    let list = |user: &str| Call::new(Method::GET, format!("/memories?user_id={user}"));
    let response = call(&app, &list(USER), Some(KEY)).await;
    assert_eq!(texts(&body_json(response).await), Vec::<&str>::new());
    let response = call(&app, &list("bob"), Some(KEY)).await;
    assert_eq!(texts(&body_json(response).await), ["likes rooibos"]);
}

// ==== unknown ids, bad bodies ====

#[tokio::test]
async fn unknown_id_is_not_found() {
    let app = protected_app();
    seed(&app, Some(KEY)).await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let calls = [
        Call::new(Method::GET, format!("/memories/{unknown}")),
        Call::new(Method::PUT, format!("/memories/{unknown}")).json(json!({ "text": "x" })),
        Call::new(Method::GET, format!("/memories/{unknown}/history")),
        Call::new(Method::DELETE, format!("/memories/{unknown}")),
    ];

    for unknown_call in calls {
        let response = call(&app, &unknown_call, Some(KEY)).await;
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{}",
            unknown_call.label()
        );
        let body = body_json(response).await;
        assert!(body["detail"].as_str().unwrap().contains(unknown), "{body}");
    }
}

#[tokio::test]
async fn empty_texts_rejected() {
    let app = protected_app();
    let id = seed(&app, Some(KEY)).await;
    let calls = [
        Call::new(Method::POST, "/memories").json(json!({ "messages": [], "user_id": USER })),
        Call::new(Method::POST, "/memories").json(json!({
            "messages": [{ "role": "user", "content": "  " }],
            "user_id": USER,
        })),
        Call::new(Method::PUT, format!("/memories/{id}")).json(json!({ "text": "" })),
        Call::new(Method::POST, "/search").json(json!({ "query": " ", "user_id": USER })),
    ];

    for bad in calls {
        let response = call(&app, &bad, Some(KEY)).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{}",
            bad.label()
        );
        assert!(body_json(response).await["detail"].is_string());
    }
}

#[tokio::test]
async fn malformed_json_gets_json_error() {
    let app = protected_app();
    let request = Request::post("/memories")
        .header("X-API-Key", KEY)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from("{\"messages\": ["))
        .unwrap();

    let response = send(&app, request).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert!(body_json(response).await["detail"].is_string());
}

#[tokio::test]
async fn configure_needs_json_object() {
    let app = protected_app();

    let object =
        Call::new(Method::POST, "/configure").json(json!({ "llm": { "provider": "none" } }));
    let response = call(&app, &object, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["message"], "Configuration set.");

    let list = Call::new(Method::POST, "/configure").json(json!(["not", "an", "object"]));
    let response = call(&app, &list, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body_json(response).await["detail"].is_string());
}

// ==== search and reset ====

#[tokio::test]
async fn search_honours_limit() {
    let app = protected_app();
    let create = Call::new(Method::POST, "/memories").json(json!({
        "messages": [
            { "role": "user", "content": "tea at eight" },
            { "role": "user", "content": "tea at noon" },
            { "role": "user", "content": "coffee at four" },
        ],
        "user_id": USER,
    }));
    assert_eq!(
        call(&app, &create, Some(KEY)).await.status(),
        StatusCode::OK
    );

    let search = Call::new(Method::POST, "/search")
        .json(json!({ "query": "tea", "user_id": USER, "limit": 1 }));
    let response = call(&app, &search, Some(KEY)).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(texts(&body_json(response).await), ["tea at eight"]);
}

#[tokio::test]
async fn reset_clears_memories_and_history() {
    let app = protected_app();
    let id = seed(&app, Some(KEY)).await;

    let response = call(&app, &Call::new(Method::POST, "/reset"), Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["message"], "All memories reset.");

    let list = Call::new(Method::GET, format!("/memories?user_id={USER}"));
    let response = call(&app, &list, Some(KEY)).await;
    assert_eq!(texts(&body_json(response).await), Vec::<&str>::new());
    let history = Call::new(Method::GET, format!("/memories/{id}/history"));
    let response = call(&app, &history, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// Builds the example app over `store`, with a counter of the requests that
/// get past the API-key layer.
fn counted_app(store: Store, calls: Arc<AtomicUsize>) -> Router {
    let count = MapRequestLayer::new(move |request: Request<Body>| {
        calls.fetch_add(1, Ordering::SeqCst);
        request
    });
    app::router(store).layer(count).layer(auth_layer(KEY))
}

/// Returns the `memory` texts of a `{"results": [...]}` body, in order.
fn texts(body: &Value) -> Vec<&str> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results list in {body}"))
        .iter()
        .map(|memory| {
            memory["memory"]
                .as_str()
                .expect("each result has a memory text")
        })
        .collect()
}
