//! The REST admin API: JSON create/read/update/delete and list for `/tools`, `/resources`,
//! `/prompts` and `/servers`. Every kind goes through the same handler; what differs per kind
//! lives in [`crate::model`] (validation) and [`crate::registry`] (membership checks).

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::error::{api_error, json_response, method_not_allowed};
use crate::gateway::{Body, Inner};
use crate::ports::Kind;
use crate::registry::record_json;

/// The kind served under a collection path segment.
pub(crate) fn collection_kind(segment: &str) -> Option<Kind> {
    match segment {
        "tools" => Some(Kind::Tool),
        "resources" => Some(Kind::Resource),
        "prompts" => Some(Kind::Prompt),
        "servers" => Some(Kind::Server),
        _ => None,
    }
}

fn parse_body(req: &Request<Bytes>) -> Result<Value, Box<Response<Body>>> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let m = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if m != "application/json" && !m.ends_with("+json") {
            return Err(Box::new(api_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be application/json",
                None,
            )));
        }
    }
    serde_json::from_slice(req.body()).map_err(|e| {
        Box::new(api_error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
            None,
        ))
    })
}

impl Inner {
    /// Handles `/{collection}` and `/{collection}/{id}`.
    pub(crate) async fn admin(&self, req: Request<Bytes>, id: Option<&str>) -> Response<Body> {
        let path = req.uri().path();
        let Some(kind) = path.trim_matches('/').split('/').next().and_then(collection_kind) else {
            return api_error(StatusCode::NOT_FOUND, "not_found", "no such collection", None);
        };
        let id = id.map(|i| percent_decode_str(i).decode_utf8_lossy().into_owned());
        let result = match (req.method().clone(), id) {
            (Method::GET, None) => self
                .registry
                .list(kind)
                .await
                .map(|items| json_response(StatusCode::OK, &Value::Array(items))),
            (Method::POST, None) => {
                let body = match parse_body(&req) {
                    Ok(b) => b,
                    Err(r) => return *r,
                };
                self.registry.create(kind, body).await.map(|rec| {
                    let mut r = json_response(StatusCode::CREATED, &record_json(&rec));
                    let loc = format!("{}/{}", path.trim_end_matches('/'), rec.id);
                    if let Ok(v) = HeaderValue::from_str(&loc) {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    r
                })
            }
            (Method::GET, Some(id)) => self
                .registry
                .get(kind, &id)
                .await
                .map(|rec| json_response(StatusCode::OK, &record_json(&rec))),
            (m @ (Method::PUT | Method::PATCH), Some(id)) => {
                let body = match parse_body(&req) {
                    Ok(b) => b,
                    Err(r) => return *r,
                };
                self.registry
                    .update(kind, &id, body, m == Method::PATCH)
                    .await
                    .map(|rec| json_response(StatusCode::OK, &record_json(&rec)))
            }
            (Method::DELETE, Some(id)) => self.registry.delete(kind, &id).await.map(|()| {
                let mut r = Response::new(Body::Empty);
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }),
            (_, None) => return method_not_allowed("GET, POST"),
            (_, Some(_)) => return method_not_allowed("GET, PUT, PATCH, DELETE"),
        };
        match result {
            Ok(resp) => {
                if req.method() != Method::GET {
                    self.refresh_registry().await;
                }
                resp
            }
            Err(e) => e.to_response(),
        }
    }
}
