//! Request targets as log lines and error texts may show them: never the userinfo
//! (`user:password@`) of an absolute URL, and never more than 100 characters.

/// A request target fit for a log line: at most 100 characters, any userinfo cut out.
pub fn shown(target: &str) -> String {
    let cut = match target.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rsplit_once('@') {
                Some((userinfo, _)) => format!("{scheme}://{}", &rest[userinfo.len() + 1..]),
                None => target.to_string(),
            }
        }
        None => target.to_string(),
    };
    cut.chars().take(100).flat_map(char::escape_debug).collect()
}
