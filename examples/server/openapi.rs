//! The OpenAPI 3.1 document of the memories API and the `/docs` page that
//! renders it.
//!
//! The page is plain HTML built on the server from the same document, so it
//! loads nothing from another host and works without JavaScript. Its
//! `Content-Security-Policy` forbids every external resource.

use std::sync::LazyLock;

use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::API_KEY_HEADER;

/// Name of the security scheme in `components.securitySchemes`.
const SCHEME: &str = "ApiKeyAuth";

static DOCUMENT: LazyLock<Value> = LazyLock::new(build_document);
static DOCUMENT_JSON: LazyLock<String> = LazyLock::new(|| DOCUMENT.to_string());
static PAGE: LazyLock<String> = LazyLock::new(|| render_page(&DOCUMENT));

/// Serves `GET /openapi.json`.
pub async fn document() -> Response {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT_JSON.as_str()).into_response()
}

/// Serves `GET /docs`.
pub async fn docs_page() -> Response {
    let policy = "default-src 'none'; style-src 'unsafe-inline'";
    ([(CONTENT_SECURITY_POLICY, policy)], Html(PAGE.as_str())).into_response()
}

// ==== the document ====

fn build_document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Memories API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "An in-memory store of short texts (memories) per user, agent or run, \
                            protected by an API key. Every operation except `/`, `/docs` and \
                            `/openapi.json` requires the key.",
        },
        "paths": paths(),
        "components": {
            "securitySchemes": {
                SCHEME: {
                    "type": "apiKey",
                    "in": "header",
                    "name": API_KEY_HEADER,
                    "description": "A key configured on the server: the one in \
                                    ADMIN_API_KEY (or the file named by ADMIN_API_KEY_FILE), \
                                    or one of the named keys in the file named by \
                                    API_KEYS_FILE.",
                },
            },
            "parameters": parameters(),
            "responses": error_responses(),
            "schemas": schemas(),
        },
    })
}

fn paths() -> Value {
    json!({
        "/": {
            "get": {
                "summary": "Redirect to the API docs",
                "operationId": "root",
                "security": [],
                "responses": { "307": { "description": "Redirect to `/docs`." } },
            },
        },
        "/docs": {
            "get": {
                "summary": "This API's documentation as an HTML page",
                "operationId": "docs",
                "security": [],
                "responses": { "200": { "description": "HTML page.",
                    "content": { "text/html": {} } } },
            },
        },
        "/openapi.json": {
            "get": {
                "summary": "This OpenAPI document",
                "operationId": "openapi",
                "security": [],
                "responses": { "200": { "description": "OpenAPI 3.1 document.",
                    "content": { "application/json": {} } } },
            },
        },
        "/memories": {
            "post": protected(json!({
                "summary": "Store messages as memories",
                "operationId": "createMemories",
                "description": "Stores each message's content as one memory. At least one of \
                                user_id, agent_id or run_id is required.",
                "requestBody": json_body("CreateRequest"),
                "responses": {
                    "200": ok("Created memories.", "AddResults"),
                    "400": error_ref("BadRequest"),
                },
            })),
            "get": protected(json!({
                "summary": "List the memories of an owner",
                "operationId": "listMemories",
                "parameters": owner_parameters(),
                "responses": {
                    "200": ok("Memories, oldest first.", "MemoryList"),
                    "400": error_ref("BadRequest"),
                },
            })),
            "delete": protected(json!({
                "summary": "Delete every memory of an owner",
                "operationId": "deleteMemories",
                "parameters": owner_parameters(),
                "responses": {
                    "200": ok("Memories deleted.", "Acknowledgement"),
                    "400": error_ref("BadRequest"),
                },
            })),
        },
        "/memories/{id}": {
            "get": protected(json!({
                "summary": "Get one memory",
                "operationId": "getMemory",
                "parameters": [parameter_ref("id")],
                "responses": {
                    "200": ok("The memory.", "Memory"),
                    "404": error_ref("NotFound"),
                },
            })),
            "put": protected(json!({
                "summary": "Replace the text of a memory",
                "operationId": "updateMemory",
                "description": "Records the old and the new text in the memory's history.",
                "parameters": [parameter_ref("id")],
                "requestBody": json_body("UpdateRequest"),
                "responses": {
                    "200": ok("Memory updated.", "Acknowledgement"),
                    "400": error_ref("BadRequest"),
                    "404": error_ref("NotFound"),
                },
            })),
            "delete": protected(json!({
                "summary": "Delete one memory",
                "operationId": "deleteMemory",
                "parameters": [parameter_ref("id")],
                "responses": {
                    "200": ok("Memory deleted.", "Acknowledgement"),
                    "404": error_ref("NotFound"),
                },
            })),
        },
        "/memories/{id}/history": {
            "get": protected(json!({
                "summary": "List the changes of a memory",
                "operationId": "memoryHistory",
                "description": "Kept after the memory is deleted, until the next reset.",
                "parameters": [parameter_ref("id")],
                "responses": {
                    "200": {
                        "description": "Changes, oldest first.",
                        "content": { "application/json": { "schema": {
                            "type": "array", "items": schema_ref("Change") } } },
                    },
                    "404": error_ref("NotFound"),
                },
            })),
        },
        "/search": {
            "post": protected(json!({
                "summary": "Search an owner's memories",
                "operationId": "searchMemories",
                "description": "Returns the owner's memories whose text contains the query, \
                                compared case-insensitively.",
                "requestBody": json_body("SearchRequest"),
                "responses": {
                    "200": ok("Matching memories, oldest first.", "MemoryList"),
                    "400": error_ref("BadRequest"),
                },
            })),
        },
        "/reset": {
            "post": protected(json!({
                "summary": "Delete all memories and all history",
                "operationId": "reset",
                "responses": { "200": ok("Store emptied.", "Acknowledgement") },
            })),
        },
        "/configure": {
            "post": protected(json!({
                "summary": "Accept a configuration object",
                "operationId": "configure",
                "description": "The in-memory store has no settings: the object is checked \
                                to be a JSON object and acknowledged.",
                "requestBody": { "required": true, "content": { "application/json": {
                    "schema": { "type": "object" } } } },
                "responses": {
                    "200": ok("Configuration accepted.", "Acknowledgement"),
                    "400": error_ref("BadRequest"),
                },
            })),
        },
        "/whoami": {
            "get": protected(json!({
                "summary": "Name the key that authenticated this request",
                "operationId": "whoami",
                "description": "Returns the name of the key, never the key. The key in \
                                `ADMIN_API_KEY` is named `admin`; the keys of the file in \
                                `API_KEYS_FILE` have the names written there. `key` is `null` \
                                when the server runs without authentication.",
                "responses": { "200": ok("The key's name.", "KeyIdentity") },
            })),
        },
    })
}

/// Adds the API-key requirement and its 401 response to an operation.
fn protected(mut operation: Value) -> Value {
    operation["security"] = json!([{ SCHEME: [] }]);
    operation["responses"]["401"] = error_ref("Unauthorized");
    operation
}

fn parameters() -> Value {
    let owner = |name: &str, what: &str| {
        json!({
            "name": name,
            "in": "query",
            "required": false,
            "description": format!("Only memories of this {what}. At least one of user_id, \
                                    agent_id or run_id is required."),
            "schema": { "type": "string" },
        })
    };
    json!({
        "user_id": owner("user_id", "user"),
        "agent_id": owner("agent_id", "agent"),
        "run_id": owner("run_id", "run"),
        "id": {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "Memory id, as returned when the memory was created.",
            "schema": { "type": "string" },
        },
    })
}

fn owner_parameters() -> Value {
    json!([
        parameter_ref("user_id"),
        parameter_ref("agent_id"),
        parameter_ref("run_id")
    ])
}

fn error_responses() -> Value {
    json!({
        "BadRequest": {
            "description": "Missing owner id, empty text or malformed JSON.",
            "content": { "application/json": { "schema": schema_ref("Error") } },
        },
        "NotFound": {
            "description": "No memory with this id.",
            "content": { "application/json": { "schema": schema_ref("Error") } },
        },
        "Unauthorized": {
            "description": format!("The {API_KEY_HEADER} header is missing, repeated or wrong."),
            "headers": { "WWW-Authenticate": {
                "description": "Always `ApiKey`.",
                "schema": { "type": "string" },
            } },
            "content": { "application/problem+json": { "schema": schema_ref("Problem") } },
        },
    })
}

fn schemas() -> Value {
    let string = json!({ "type": "string" });
    let nullable_string = json!({ "type": ["string", "null"] });
    let owner_properties = json!({
        "user_id": string,
        "agent_id": string,
        "run_id": string,
    });

    let mut create_properties = owner_properties.clone();
    create_properties["messages"] = json!({
        "type": "array", "minItems": 1, "items": schema_ref("Message") });
    create_properties["metadata"] = json!({ "type": "object" });

    let mut search_properties = owner_properties.clone();
    search_properties["query"] = string.clone();
    search_properties["limit"] = json!({ "type": "integer", "minimum": 0, "default": 100 });

    let mut memory_properties = owner_properties;
    memory_properties["id"] = string.clone();
    memory_properties["memory"] = string.clone();
    memory_properties["metadata"] = json!({ "type": "object" });
    memory_properties["created_at"] = json!({ "type": "string", "format": "date-time" });
    memory_properties["updated_at"] = json!({ "type": ["string", "null"], "format": "date-time" });

    json!({
        "Message": {
            "type": "object",
            "required": ["role", "content"],
            "properties": { "role": string, "content": string },
        },
        "CreateRequest": {
            "type": "object",
            "required": ["messages"],
            "properties": create_properties,
        },
        "UpdateRequest": {
            "type": "object",
            "required": ["text"],
            "properties": { "text": string },
        },
        "SearchRequest": {
            "type": "object",
            "required": ["query"],
            "properties": search_properties,
        },
        "Memory": {
            "type": "object",
            "required": ["id", "memory", "created_at", "updated_at"],
            "properties": memory_properties,
        },
        "MemoryList": {
            "type": "object",
            "required": ["results"],
            "properties": { "results": { "type": "array", "items": schema_ref("Memory") } },
        },
        "AddResults": {
            "type": "object",
            "required": ["results"],
            "properties": { "results": { "type": "array", "items": {
                "type": "object",
                "required": ["id", "memory", "event"],
                "properties": {
                    "id": string,
                    "memory": string,
                    "event": { "const": "ADD" },
                },
            } } },
        },
        "Change": {
            "type": "object",
            "required": ["id", "memory_id", "event", "old_memory", "new_memory", "created_at"],
            "properties": {
                "id": string,
                "memory_id": string,
                "event": { "enum": ["ADD", "UPDATE", "DELETE"] },
                "old_memory": nullable_string,
                "new_memory": nullable_string,
                "created_at": { "type": "string", "format": "date-time" },
            },
        },
        "KeyIdentity": {
            "type": "object",
            "required": ["key"],
            "properties": { "key": nullable_string },
        },
        "Acknowledgement": {
            "type": "object",
            "required": ["message"],
            "properties": { "message": string },
        },
        "Error": {
            "type": "object",
            "required": ["detail"],
            "properties": { "detail": string },
        },
        "Problem": {
            "description": "RFC 9457 problem details.",
            "type": "object",
            "properties": {
                "type": string,
                "title": string,
                "status": { "type": "integer" },
                "detail": string,
            },
        },
    })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn parameter_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

fn error_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{name}") })
}

fn json_body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema_ref(schema) } } })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({ "description": description,
            "content": { "application/json": { "schema": schema_ref(schema) } } })
}

// ==== the HTML page ====

/// Renders one table row per operation, read from `document`.
fn render_page(document: &Value) -> String {
    let title = escape(document["info"]["title"].as_str().unwrap_or("API"));
    let version = escape(document["info"]["version"].as_str().unwrap_or(""));
    let description = render_text(document["info"]["description"].as_str().unwrap_or(""));
    let header = escape(API_KEY_HEADER);

    let mut rows = String::new();
    let empty = Map::new();
    let paths = document["paths"].as_object().unwrap_or(&empty);
    for (path, item) in paths {
        let operations = item.as_object().unwrap_or(&empty);
        for (method, operation) in operations {
            rows.push_str(&render_row(document, path, method, operation));
        }
    }

    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} {version}</title>
<style>
body {{ font-family: sans-serif; margin: 2rem; max-width: 70rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #ccc; padding: .4rem .6rem; text-align: left; vertical-align: top; }}
code {{ background: #f4f4f4; padding: 0 .2rem; }}
.method {{ font-weight: bold; text-transform: uppercase; }}
</style>
</head>
<body>
<h1>{title} <small>{version}</small></h1>
<p>{description}</p>
<p>Authentication: send the key in the <code>{header}</code> header. A request without it,
or with a wrong one, gets <code>401 Unauthorized</code>.</p>
<p>Machine-readable description: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
<table>
<thead><tr><th>Method</th><th>Path</th><th>Summary</th><th>Parameters</th><th>Key required</th></tr></thead>
<tbody>
{rows}</tbody>
</table>
</body>
</html>
"#
    )
}

fn render_row(document: &Value, path: &str, method: &str, operation: &Value) -> String {
    let mut summary = render_text(operation["summary"].as_str().unwrap_or(""));
    if let Some(description) = operation["description"].as_str() {
        summary.push_str(&format!("<br><small>{}</small>", render_text(description)));
    }
    let needs_key = operation["security"]
        .as_array()
        .is_some_and(|requirements| !requirements.is_empty());

    let mut parameters: Vec<String> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|parameter| resolve(document, parameter)["name"].as_str())
        .map(|name| format!("<code>{}</code>", escape(name)))
        .collect();
    if let Some(reference) =
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
    {
        let schema = reference.rsplit('/').next().unwrap_or(reference);
        parameters.push(format!("JSON body <code>{}</code>", escape(schema)));
    }

    format!(
        "<tr><td class=\"method\">{method}</td><td><code>{path}</code></td>\
         <td>{summary}</td><td>{parameters}</td><td>{key}</td></tr>\n",
        method = escape(method),
        path = escape(path),
        parameters = parameters.join(", "),
        key = if needs_key { "yes" } else { "no" },
    )
}

/// Follows a local `$ref` such as `#/components/parameters/id`. Any other
/// value is returned as it is.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"]
        .as_str()
        .and_then(|reference| reference.strip_prefix('#'))
    {
        Some(pointer) => document.pointer(pointer).unwrap_or(&Value::Null),
        None => value,
    }
}

/// Escapes a description and turns its `` `code` `` spans, the only Markdown
/// the document uses, into `<code>` elements.
fn render_text(text: &str) -> String {
    let mut html = String::with_capacity(text.len());
    for (index, part) in text.split('`').enumerate() {
        let part = escape(part);
        if index % 2 == 1 {
            html.push_str(&format!("<code>{part}</code>"));
        } else {
            html.push_str(&part);
        }
    }
    html
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}
