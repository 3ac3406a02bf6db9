//! Upstream slugs (the prefix of an upstream's members' names and of its resources' aliases):
//! no two upstreams may have one, case aside, or their names and URIs could not be told apart.

use std::collections::HashMap;

use serde_json::Value;

use super::RegistryError;
use crate::model::{FieldError, UpstreamDef};

/// The slug of a stored upstream's body, lowercased.
pub(super) fn slug_of(body: &Value) -> String {
    body["slug"]
        .as_str()
        .or_else(|| body["name"].as_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The refusal of `slug`, which upstream `other` has already, at `field`.
pub(super) fn taken(slug: &str, other: &str, field: &str) -> RegistryError {
    FieldError::new(
        field,
        format!("upstream '{other}' has the slug '{slug}' already (names and resource URIs of the two could not be told apart): set another slug"),
    )
    .into()
}

/// Refuses a seed file whose upstreams share a slug with each other or with a stored upstream
/// the file does not replace (`stored`: name and body text of each).
pub(super) fn check_seed<'a>(
    file: &[UpstreamDef],
    stored: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), RegistryError> {
    let mut slugs: HashMap<String, String> = stored
        .filter(|(name, _)| !file.iter().any(|u| u.name == *name))
        .filter_map(|(name, body)| Some((slug_of(&serde_json::from_str(body).ok()?), name.to_string())))
        .collect();
    for (i, u) in file.iter().enumerate() {
        let slug = u.slug().to_ascii_lowercase();
        if let Some(other) = slugs.insert(slug.clone(), u.name.clone()) {
            return Err(taken(&slug, &other, &format!("upstream[{i}].slug")));
        }
    }
    Ok(())
}
