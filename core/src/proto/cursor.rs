//! Opaque pagination cursors. A cursor encodes the list it belongs to and an offset; a client
//! must treat it as opaque, and anything not minted here is refused with -32602.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::Value;

use crate::proto::jsonrpc::RpcError;

/// Encodes a cursor for `list` at `offset`.
pub fn encode(list: &str, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("mcpgw1:{list}:{offset}"))
}

/// Decodes the `cursor` param of a list request (absent means the first page).
pub fn decode(list: &str, cursor: Option<&Value>) -> Result<usize, RpcError> {
    let bad = || RpcError::invalid_params("Invalid cursor");
    let Some(c) = cursor else { return Ok(0) };
    let c = c.as_str().ok_or_else(bad)?;
    let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let rest = raw
        .strip_prefix("mcpgw1:")
        .and_then(|r| r.strip_prefix(list))
        .and_then(|r| r.strip_prefix(':'));
    rest.and_then(|o| o.parse().ok()).ok_or_else(bad)
}

/// Cuts one page out of `items`; returns the page and the next cursor, if any.
pub fn page<T: Clone>(
    list: &str,
    items: &[T],
    cursor: Option<&Value>,
    page_size: usize,
) -> Result<(Vec<T>, Option<String>), RpcError> {
    let start = decode(list, cursor)?;
    if start > items.len() {
        return Err(RpcError::invalid_params("Invalid cursor"));
    }
    let end = (start + page_size).min(items.len());
    let next = (end < items.len()).then(|| encode(list, end));
    Ok((items[start..end].to_vec(), next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pages_through_and_rejects_foreign_cursors() {
        let items: Vec<u32> = (0..5).collect();
        let (p1, c1) = page("tools", &items, None, 2).unwrap();
        assert_eq!(p1, vec![0, 1]);
        let (p2, c2) = page("tools", &items, Some(&json!(c1.unwrap())), 2).unwrap();
        assert_eq!(p2, vec![2, 3]);
        let (p3, c3) = page("tools", &items, Some(&json!(c2.clone().unwrap())), 2).unwrap();
        assert_eq!((p3, c3), (vec![4], None));
        for bad in [
            json!("garbage!"),
            json!(7),
            json!(encode("prompts", 2)),
            json!(encode("tools", 99)),
        ] {
            assert_eq!(
                page("tools", &items, Some(&bad), 2).unwrap_err().code,
                crate::proto::jsonrpc::INVALID_PARAMS
            );
        }
    }
}
