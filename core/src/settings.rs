//! Reading settings: the error a bad setting gets and list splitting. A leaf: every part of
//! the configuration (gateway, auth, rate limits) reports through it, so none of them needs
//! another's module.

/// A setting that failed validation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    /// The setting's name.
    pub setting: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// The error for `setting`.
    pub fn new(setting: &str, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }

    /// The variable that holds the setting: `MCPGW_PAGE_SIZE` for the field `page_size` (a
    /// setting already named by its variable stays as it is).
    pub fn variable(&self) -> String {
        if self.setting.starts_with("MCPGW_") {
            self.setting.clone()
        } else {
            format!("MCPGW_{}", self.setting.to_ascii_uppercase())
        }
    }
}

/// A comma-separated setting as its items, trimmed, empty ones dropped.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A yes-or-no setting's text: `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off` (any case); none
/// for anything else, which the caller refuses naming the setting.
pub fn flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}
