//! Splitting multi-document YAML, so that one broken document cannot hide the others, and
//! the size and depth limits checked before a document is parsed further.

/// etcd refuses objects over 1.5 MiB; a document over 1 MiB is refused here.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Deeper nesting than this is not a Kubernetes object (Istio's deepest is about 10).
pub const MAX_DEPTH: usize = 64;

/// One document's text and where it starts.
pub(crate) struct Chunk<'a> {
    /// 1-based index among the file's documents.
    pub(crate) index: usize,
    /// 1-based line of the chunk's first line in the file.
    pub(crate) first_line: usize,
    pub(crate) text: &'a str,
}

/// Splits at document markers: a line that is `---` alone or followed by whitespace. YAML
/// forbids such a line inside any scalar, so splitting on it is exact. A leading chunk with
/// nothing but comments, blank lines or directives (before the first `---`) is not counted.
pub(crate) fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if offset > 0 && is_marker(line) {
            chunks.push((start_line, &text[start..offset]));
            start = offset;
            start_line = n + 1;
        }
        offset += line.len();
    }
    chunks.push((start_line, &text[start..]));
    if chunks.first().is_some_and(|(_, t)| is_blank(t)) && chunks.len() > 1 {
        chunks.remove(0);
    }
    chunks.into_iter().enumerate().map(|(i, (first_line, text))| Chunk { index: i + 1, first_line, text }).collect()
}

fn is_marker(line: &str) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    line == "---" || line.strip_prefix("---").is_some_and(|rest| rest.starts_with([' ', '\t']))
}

/// Only comments, blank lines and directives.
pub(crate) fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l.starts_with('%') || l == "---" || l == "..."
    })
}

/// How deeply a value nests (a scalar is 0).
pub(crate) fn depth(value: &serde_yaml::Value) -> usize {
    // Iterative, so that a hostile document cannot overflow the stack here.
    let mut max = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            serde_yaml::Value::Sequence(s) => stack.extend(s.iter().map(|x| (x, d + 1))),
            serde_yaml::Value::Mapping(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            serde_yaml::Value::Tagged(t) => stack.push((&t.value, d)),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_markers_only() {
        let text = "---\na: 1\n---\nb: |\n  --- not a marker\n--- # comment\nc: 3\n";
        let chunks = split(text);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].index, 1);
        assert_eq!(chunks[0].first_line, 1);
        assert!(chunks[1].text.contains("not a marker"));
        assert_eq!(chunks[1].first_line, 3);
        assert_eq!(chunks[2].first_line, 6);
    }

    #[test]
    fn leading_comments_are_not_a_document() {
        let chunks = split("# header\n---\na: 1\n");
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].first_line, 2);
        assert_eq!(split("a: 1\n").len(), 1);
        assert_eq!(split("").len(), 1);
    }

    #[test]
    fn measures_depth() {
        let v: serde_yaml::Value = serde_yaml::from_str("a: {b: [1, {c: 2}]}").unwrap();
        assert_eq!(depth(&v), 4);
    }
}
