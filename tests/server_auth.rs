//! Authentication of the example server, driven in-process with `oneshot`.

mod common;

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{Method, Request, StatusCode};
use common::{
    Call, ENDPOINT_COUNT, KEY, app, assert_unauthorized, auth_layer, body_json, call, open_app,
    protected_app, protected_endpoints, seed, send,
};
use tower_api_key::ApiKeyLayer;

const MISSING: &str = "Missing API key";
const INVALID: &str = "Invalid API key";

// ==== authentication disabled ====

#[tokio::test]
async fn disabled_auth_serves_every_endpoint() {
    for index in 0..ENDPOINT_COUNT {
        let app = open_app();
        let id = seed(&app, None).await;
        let endpoint = protected_endpoints(&id).swap_remove(index);

        let response = call(&app, &endpoint, None).await;

        assert_eq!(response.status(), StatusCode::OK, "{}", endpoint.label());
    }
}

#[tokio::test]
async fn disabled_auth_ignores_sent_key() {
    for index in 0..ENDPOINT_COUNT {
        let app = open_app();
        let id = seed(&app, Some("any-key-at-all")).await;
        let endpoint = protected_endpoints(&id).swap_remove(index);

        let response = call(&app, &endpoint, Some("any-key-at-all")).await;

        assert_eq!(response.status(), StatusCode::OK, "{}", endpoint.label());
    }
}

// ==== the protected endpoints ====

#[tokio::test]
async fn endpoints_reject_missing_key() {
    let app = protected_app();
    let id = seed(&app, Some(KEY)).await;

    for endpoint in protected_endpoints(&id) {
        let response = call(&app, &endpoint, None).await;
        assert_unauthorized(response, MISSING, &endpoint.label()).await;
    }
}

#[tokio::test]
async fn endpoints_reject_wrong_key() {
    let app = protected_app();
    let id = seed(&app, Some(KEY)).await;

    for endpoint in protected_endpoints(&id) {
        let response = call(&app, &endpoint, Some("wrong-key-0123456789abcdef")).await;
        assert_unauthorized(response, INVALID, &endpoint.label()).await;
    }
}

#[tokio::test]
async fn endpoints_accept_right_key() {
    for index in 0..ENDPOINT_COUNT {
        let app = protected_app();
        let id = seed(&app, Some(KEY)).await;
        let endpoint = protected_endpoints(&id).swap_remove(index);

        let response = call(&app, &endpoint, Some(KEY)).await;

        assert_eq!(response.status(), StatusCode::OK, "{}", endpoint.label());
    }
}

#[tokio::test]
async fn other_methods_need_key() {
    let app = protected_app();

    for method in [Method::HEAD, Method::OPTIONS, Method::PATCH] {
        let endpoint = Call::new(method, "/memories?user_id=alice");
        let response = call(&app, &endpoint, None).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{}",
            endpoint.label()
        );
    }
}

#[tokio::test]
async fn unknown_path_needs_key() {
    let app = protected_app();
    let unknown = Call::new(Method::GET, "/admin/users");

    let response = call(&app, &unknown, None).await;
    assert_unauthorized(response, MISSING, "without key").await;

    let response = call(&app, &unknown, Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let body = body_json(response).await;
    assert_eq!(body["detail"], "Not found.");
}

// ==== public paths ====

#[tokio::test]
async fn root_open_without_key() {
    let app = protected_app();

    let response = call(&app, &Call::new(Method::GET, "/"), None).await;

    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(response.headers()[LOCATION], "/docs");
}

#[tokio::test]
async fn docs_open_without_key() {
    let app = protected_app();

    let response = call(&app, &Call::new(Method::GET, "/docs"), None).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
    );
}

#[tokio::test]
async fn openapi_open_without_key() {
    let app = protected_app();

    let response = call(&app, &Call::new(Method::GET, "/openapi.json"), None).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let body = body_json(response).await;
    assert!(body["openapi"].is_string(), "{body}");
}

#[tokio::test]
async fn public_paths_ignore_wrong_key() {
    let app = protected_app();

    for path in app::PUBLIC_PATHS {
        let response = call(&app, &Call::new(Method::GET, path), Some("wrong")).await;
        assert!(
            response.status().is_success() || response.status().is_redirection(),
            "{path}: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn public_paths_are_exact() {
    let app = protected_app();
    let near_misses = [
        "/docs/",
        "/DOCS",
        "/docs/../memories",
        "//docs",
        "/docs;x",
        "/openapi.json/x",
        "/openapi.json.bak",
        "/index.html",
    ];

    for path in near_misses {
        let response = call(&app, &Call::new(Method::GET, path), None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

// ==== rejection details ====

#[tokio::test]
async fn missing_key_detail_names_header() {
    let app = protected_app();

    let response = call(&app, &Call::new(Method::GET, "/memories?user_id=a"), None).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = body_json(response).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with(MISSING), "{detail}");
    assert!(detail.contains("X-API-Key"), "{detail}");
}

#[tokio::test]
async fn wrong_key_detail_says_invalid() {
    let app = protected_app();

    let response = call(
        &app,
        &Call::new(Method::GET, "/memories?user_id=a"),
        Some("nope"),
    )
    .await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = body_json(response).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with(INVALID), "{detail}");
    assert!(
        !detail.contains("nope"),
        "the detail echoes the key: {detail}"
    );
}

#[tokio::test]
async fn challenge_is_exactly_api_key() {
    let app = protected_app();

    for key in [None, Some("wrong")] {
        let response = call(&app, &Call::new(Method::POST, "/reset"), key).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(challenges, ["ApiKey"], "key {key:?}");
    }
}

// ==== which keys match ====

#[tokio::test]
async fn near_miss_keys_rejected() {
    let app = protected_app();
    let list = Call::new(Method::GET, "/memories?user_id=alice");
    let mut changed_last = KEY.to_owned();
    changed_last.pop();
    changed_last.push('g');

    let near_misses = [
        ("empty", String::new()),
        ("prefix", KEY[..KEY.len() - 1].to_owned()),
        ("first half", KEY[..KEY.len() / 2].to_owned()),
        ("suffix", KEY[1..].to_owned()),
        ("extended", format!("{KEY}x")),
        ("last character changed", changed_last),
        ("upper-cased", KEY.to_uppercase()),
        ("leading space", format!(" {KEY}")),
        ("trailing space", format!("{KEY} ")),
        ("both sides padded", format!("  {KEY}  ")),
        ("tab-padded", format!("\t{KEY}")),
        ("doubled", format!("{KEY}{KEY}")),
    ];

    for (case, key) in near_misses {
        let response = call(&app, &list, Some(&key)).await;
        assert_unauthorized(response, INVALID, case).await;
    }
}

#[tokio::test]
async fn repeated_key_header_rejected() {
    let app = protected_app();
    let request = Request::get("/memories?user_id=alice")
        .header("X-API-Key", KEY)
        .header("X-API-Key", KEY)
        .body(Body::empty())
        .unwrap();

    let response = send(&app, request).await;

    assert_unauthorized(response, "Ambiguous API key", "two identical headers").await;
}

#[tokio::test]
async fn key_elsewhere_in_request_rejected() {
    let app = protected_app();
    let in_query = Request::get(format!("/memories?user_id=alice&api_key={KEY}"))
        .body(Body::empty())
        .unwrap();
    let as_bearer = Request::get("/memories?user_id=alice")
        .header("Authorization", format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let other_header = Request::get("/memories?user_id=alice")
        .header("X-Api-Token", KEY)
        .body(Body::empty())
        .unwrap();

    for (case, request) in [
        ("query", in_query),
        ("bearer", as_bearer),
        ("other header", other_header),
    ] {
        let response = send(&app, request).await;
        assert_unauthorized(response, MISSING, case).await;
    }
}

#[tokio::test]
async fn header_name_case_insensitive() {
    let app = protected_app();

    for name in ["x-api-key", "X-API-KEY", "x-Api-kEy"] {
        let request = Request::get("/memories?user_id=alice")
            .header(name, KEY)
            .body(Body::empty())
            .unwrap();
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
    }
}

#[tokio::test]
async fn long_key_accepted() {
    let key: String = "0123456789abcdefghijklmnopqrstuvwxyz"
        .chars()
        .cycle()
        .take(4096)
        .collect();
    let app = app::app(auth_layer(&key));
    let list = Call::new(Method::GET, "/memories?user_id=alice");

    let response = call(&app, &list, Some(&key)).await;
    assert_eq!(response.status(), StatusCode::OK, "the 4096-character key");

    let response = call(&app, &list, Some(&key[..4095])).await;
    assert_unauthorized(response, INVALID, "the key less its last character").await;
}

#[tokio::test]
async fn punctuation_key_accepted() {
    let key: String = (b'!'..=b'~')
        .filter(u8::is_ascii_punctuation)
        .map(char::from)
        .collect();
    assert_eq!(key.len(), 32, "every ASCII punctuation character");
    let app = app::app(auth_layer(&key));
    let list = Call::new(Method::GET, "/memories?user_id=alice");

    let response = call(&app, &list, Some(&key)).await;
    assert_eq!(response.status(), StatusCode::OK);

    let response = call(&app, &list, Some(&key[1..])).await;
    assert_unauthorized(response, INVALID, "the key less its first character").await;
}

#[tokio::test]
async fn second_named_key_accepted() {
    let layer = app::configure_auth(
        ApiKeyLayer::builder()
            .named_key("admin", KEY)
            .named_key("ci", "ci-key-0123456789abcdef"),
    )
    .build()
    .unwrap();
    let app = app::app(layer);
    let list = Call::new(Method::GET, "/memories?user_id=alice");

    for key in [KEY, "ci-key-0123456789abcdef"] {
        let response = call(&app, &list, Some(key)).await;
        assert_eq!(response.status(), StatusCode::OK, "{key}");
    }
}

// ==== rebuilding ====

#[tokio::test]
async fn rebuild_without_key_opens_app() {
    let list = Call::new(Method::GET, "/memories?user_id=alice");
    let protected = protected_app();
    let response = call(&protected, &list, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "auth on");

    let reopened = app::app(ApiKeyLayer::disabled());

    let response = call(&reopened, &list, None).await;
    assert_eq!(response.status(), StatusCode::OK, "auth off after on");
    let response = call(&protected, &list, None).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the first app keeps its own layer"
    );
}
