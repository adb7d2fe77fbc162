//! The OpenAPI document and the `/docs` page of the example server.

mod common;

use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use common::{
    Call, ENDPOINT_COUNT, body_json, body_text, call, protected_app, protected_endpoints,
};
use serde_json::{Value, json};

/// Every operation the API serves, as `(method, OpenAPI path)`.
const PROTECTED_OPERATIONS: [(&str, &str); ENDPOINT_COUNT] = [
    ("post", "/memories"),
    ("get", "/memories"),
    ("get", "/memories/{id}"),
    ("put", "/memories/{id}"),
    ("get", "/memories/{id}/history"),
    ("delete", "/memories/{id}"),
    ("delete", "/memories"),
    ("post", "/search"),
    ("post", "/reset"),
    ("post", "/configure"),
    ("get", "/whoami"),
];
const PUBLIC_OPERATIONS: [(&str, &str); 3] =
    [("get", "/"), ("get", "/docs"), ("get", "/openapi.json")];

async fn openapi_document() -> Value {
    let app = protected_app();
    let response = call(&app, &Call::new(Method::GET, "/openapi.json"), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    body_json(response).await
}

#[tokio::test]
async fn openapi_is_version_3_1() {
    let document = openapi_document().await;

    let version = document["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "{version}");
    assert!(document["info"]["title"].is_string());
    assert!(document["info"]["version"].is_string());
}

#[tokio::test]
async fn openapi_declares_api_key_scheme() {
    let document = openapi_document().await;

    let scheme = &document["components"]["securitySchemes"]["ApiKeyAuth"];
    assert_eq!(scheme["type"], "apiKey", "{scheme}");
    assert_eq!(scheme["in"], "header", "{scheme}");
    assert_eq!(scheme["name"], "X-API-Key", "{scheme}");
}

#[tokio::test]
async fn openapi_protects_each_endpoint() {
    let document = openapi_document().await;

    for (method, path) in PROTECTED_OPERATIONS {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is missing");
        assert_eq!(
            operation["security"],
            json!([{ "ApiKeyAuth": [] }]),
            "{method} {path}"
        );
        assert_eq!(
            operation["responses"]["401"]["$ref"], "#/components/responses/Unauthorized",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn openapi_marks_public_paths_open() {
    let document = openapi_document().await;

    for (method, path) in PUBLIC_OPERATIONS {
        let operation = &document["paths"][path][method];
        assert_eq!(operation["security"], json!([]), "{method} {path}");
    }
}

#[tokio::test]
async fn openapi_lists_only_served_operations() {
    let document = openapi_document().await;

    let mut listed: Vec<(String, String)> = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            listed.push((method.clone(), path.clone()));
        }
    }
    let mut expected: Vec<(String, String)> = PROTECTED_OPERATIONS
        .iter()
        .chain(&PUBLIC_OPERATIONS)
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    listed.sort();
    expected.sort();

    assert_eq!(listed, expected);
    assert_eq!(protected_endpoints("id").len(), ENDPOINT_COUNT);
}

#[tokio::test]
async fn openapi_references_resolve() {
    let document = openapi_document().await;
    let mut references = Vec::new();
    collect_references(&document, &mut references);
    assert!(references.len() > 20, "found only {references:?}");

    for reference in references {
        let pointer = reference.strip_prefix('#').expect("a local reference");
        assert!(
            document.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
}

#[tokio::test]
async fn docs_page_lists_every_operation() {
    let app = protected_app();

    let response = call(&app, &Call::new(Method::GET, "/docs"), None).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let page = body_text(response).await;
    assert!(
        page.contains(r#"<a href="/openapi.json">"#),
        "no link to the document"
    );
    assert!(page.contains("<code>X-API-Key</code>"), "no header name");
    for (method, path) in PROTECTED_OPERATIONS.iter().chain(&PUBLIC_OPERATIONS) {
        let row = format!(r#"<td class="method">{method}</td><td><code>{path}</code></td>"#);
        assert!(page.contains(&row), "no row for {method} {path}");
    }
}

#[tokio::test]
async fn docs_page_loads_nothing_external() {
    let app = protected_app();

    let response = call(&app, &Call::new(Method::GET, "/docs"), None).await;

    assert_eq!(response.status(), StatusCode::OK);
    let policy = response.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    let page = body_text(response).await;
    for forbidden in [
        "http:",
        "https:",
        "src=\"//",
        "href=\"//",
        "<script",
        "<link",
        "@import",
    ] {
        assert!(!page.contains(forbidden), "the page contains {forbidden:?}");
    }
}

fn collect_references(value: &Value, references: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (name, child) in object {
                match (name.as_str(), child) {
                    ("$ref", Value::String(reference)) => references.push(reference.clone()),
                    _ => collect_references(child, references),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_references(item, references);
            }
        }
        _ => {}
    }
}
