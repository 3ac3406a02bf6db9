//! An upstream's answer to a request, kept as the text it arrived in where it came as text (a
//! streamable HTTP event): the relay only needs to know it is the answer to its request and to
//! cut the `result` out, so the result goes to the client without being parsed into a value tree
//! and written again.

use serde::de::Deserializer;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::proto::jsonrpc::{Json, RpcError, INTERNAL_ERROR};

pub(crate) use crate::proto::classify::{kind_of, Kind};

/// The result and error of a response, the result left as text.
#[derive(Deserialize)]
struct Parts<'a> {
    #[serde(default, borrow, deserialize_with = "raw")]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Value,
}

fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A whole response object of the upstream's.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// As it arrived (known to be a response: see [`kind_of`]).
    Text(String),
    /// Already parsed (a JSON body, a duplex transport).
    Value(Value),
}

impl Answer {
    /// The response as a value.
    pub fn into_value(self) -> Value {
        match self {
            Answer::Text(t) => serde_json::from_str(&t).unwrap_or(Value::Null),
            Answer::Value(v) => v,
        }
    }

    /// The client's side of it: the result's text, or the error.
    pub fn outcome(&self) -> Result<Json, RpcError> {
        let (result, error) = match self {
            Answer::Text(t) => match serde_json::from_str::<Parts<'_>>(t) {
                Ok(p) => match p.result {
                    Some(r) => return Ok(Json(r.get().to_string())),
                    None => (None, p.error),
                },
                Err(_) => (None, Value::Null),
            },
            Answer::Value(v) => match v.get("result") {
                Some(r) => (Some(r), Value::Null),
                None => (None, v["error"].clone()),
            },
        };
        if let Some(r) = result {
            return Ok(Json(r.to_string()));
        }
        let mut err = RpcError::new(
            error["code"].as_i64().unwrap_or(INTERNAL_ERROR),
            error["message"].as_str().unwrap_or("upstream error").to_string(),
        );
        if let Some(d) = error.get("data") {
            err = err.with_data(d.clone());
        }
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_are_told_apart_without_parsing_them_whole() {
        let k = |t: &str| match kind_of(t) {
            Some(Kind::Response(id)) => format!("response {id:?}"),
            Some(Kind::Other) => "other".into(),
            None => "not json".into(),
        };
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":7,"result":{"a":[1,2]}}"#),
            "response Some(7)"
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":"s-1","error":{"code":-1,"message":"x"}}"#),
            "response None"
        );
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":null,"result":null}"#), "response None");
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":3,"method":"roots/list"}"#), "other");
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#),
            "other"
        );
        assert_eq!(k(r#"[{"id":1,"result":{}}]"#), "other");
        assert_eq!(k(r#"{"id":1,"result":"#), "not json");
    }

    #[test]
    fn the_result_is_passed_on_as_it_came_and_errors_keep_their_fields() {
        let text = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"é \u00e9"}],"n":1.50}}"#;
        let a = Answer::Text(text.into());
        assert_eq!(
            a.outcome().unwrap().0,
            r#"{"content":[{"type":"text","text":"é \u00e9"}],"n":1.50}"#
        );
        let e =
            Answer::Text(r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad","data":{"k":1}}}"#.into());
        let err = e.outcome().unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str(), err.data),
            (-32602, "bad", Some(json!({"k": 1})))
        );
        let v = Answer::Value(json!({"id": 1, "result": {"x": true}}));
        assert_eq!(v.outcome().unwrap().0, r#"{"x":true}"#);
        assert_eq!(Answer::Text(text.into()).into_value()["result"]["n"], json!(1.5));
    }
}
