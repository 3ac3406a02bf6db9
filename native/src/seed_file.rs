//! Reading the `--config` file (TOML) entry by entry. A TOML parser builds a document tree some
//! twenty times the size of its text before serde sees it; for a file of 10,000 tools that
//! peak (tens of MB) would stay as the process's RSS after it is freed. The file is cut at its
//! top-level entry headers (`[[tool]]`, `[[resource]]`, … outside multi-line strings), each
//! group of entries parsed on its own and appended; a file that does not parse that way is
//! parsed whole, so its errors name the right line.

use mcpgw_core::SeedFile;

/// The headers of the seed file's top-level arrays.
const HEADERS: [&str; 6] = [
    "[[tool]]",
    "[[resource]]",
    "[[resource_template]]",
    "[[prompt]]",
    "[[server]]",
    "[[upstream]]",
];

/// Entries parsed at a time.
const GROUP: usize = 256;

/// The file's line-start byte offsets where a top-level entry begins (outside `"""` and `'''`
/// strings).
fn entry_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut open: Option<&str> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if open.is_none()
            && HEADERS
                .iter()
                .any(|h| trimmed == *h || trimmed.starts_with(&format!("{h} #")))
        {
            starts.push(offset);
        }
        // Multi-line strings: an odd number of delimiters on the line toggles being inside one.
        for delim in ["\"\"\"", "'''"] {
            if open.is_some_and(|o| o != delim) {
                continue;
            }
            if line.matches(delim).count() % 2 == 1 {
                open = if open.is_some() { None } else { Some(delim) };
            }
        }
        offset += line.len();
    }
    starts
}

fn append(into: &mut SeedFile, part: SeedFile) {
    into.tool.extend(part.tool);
    into.resource.extend(part.resource);
    into.resource_template.extend(part.resource_template);
    into.prompt.extend(part.prompt);
    into.server.extend(part.server);
    into.upstream.extend(part.upstream);
}

/// The seed file in `text`.
pub fn parse(text: &str) -> Result<SeedFile, toml::de::Error> {
    let starts = entry_starts(text);
    let mut out = SeedFile::default();
    let mut bounds: Vec<usize> = std::iter::once(0)
        .chain(starts.iter().copied().skip(1).step_by(GROUP))
        .collect();
    bounds.push(text.len());
    // The part before the first header holds no entry headers; the first group includes it.
    for pair in bounds.windows(2) {
        match toml::from_str::<SeedFile>(&text[pair[0]..pair[1]]) {
            Ok(part) => append(&mut out, part),
            // Whole, for the error (with its line) or for a file this cutting misread.
            Err(_) => return toml::from_str(text),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_parsed_in_groups_equals_the_file_parsed_whole() {
        let mut text = String::from("# tools\n");
        for i in 0..600 {
            text.push_str(&format!(
                "[[tool]]\nname = \"t{i}\"\nurl = \"https://api.example/{i}\"\ndescription = \"\"\"\n[[tool]]\nnot a header\n\"\"\"\n[tool.headers]\nx-n = \"{i}\"\n\n"
            ));
            if i % 100 == 0 {
                text.push_str(&format!("[[prompt]]\nname = \"p{i}\"\ntemplate = 'hi'\n\n"));
            }
        }
        text.push_str("[[server]]\nname = \"s\"\ntools = [\"t1\"]\n");
        let whole: SeedFile = toml::from_str(&text).expect("whole");
        let grouped = parse(&text).expect("grouped");
        assert_eq!(grouped, whole);
        assert_eq!(
            (grouped.tool.len(), grouped.prompt.len(), grouped.server.len()),
            (600, 6, 1)
        );
        assert!(grouped.tool[5]
            .description
            .as_deref()
            .unwrap_or_default()
            .contains("[[tool]]"));
    }

    #[test]
    fn an_error_names_the_line_of_the_whole_file() {
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&format!(
                "[[tool]]\nname = \"t{i}\"\nurl = \"https://api.example/{i}\"\n\n"
            ));
        }
        text.push_str("[[tool]]\nname = \"broken\"\nurl = 7\n");
        let grouped = parse(&text).unwrap_err().to_string();
        let whole = toml::from_str::<SeedFile>(&text).unwrap_err().to_string();
        assert_eq!(grouped, whole, "the same error, with the same line");
        assert!(grouped.contains("line 1203"), "{grouped}");
    }
}
