//! An organization's other sites, as an operator's tools keep them: a name of the operator's
//! choosing, the site's controller URL and an API token made on that site. `sw` keeps them in
//! its configuration file, the dashboard in the browser; both check them here, so a name or URL
//! one refuses the other refuses with the same words.

use crate::validate::ValidationError;
use crate::TOKEN_PREFIX;
use serde::{Deserialize, Serialize};

/// At most this many other sites on one dashboard page (each is asked every few seconds).
pub const MAX_LINKED_SITES: usize = 64;

/// A site's name: letters, digits, `-`, `_` and `.`, 1–63 characters.
pub fn site_name(field: &str, v: &str) -> Result<String, ValidationError> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "'{}' is not a site name: use letters, digits, '-', '_' and '.' (at most 63)",
                v.escape_default()
            ),
        ))
    }
}

/// A controller's URL: `http://` or `https://`, a host and a port, nothing else (a
/// trailing `/` is dropped).
pub fn site_url(field: &str, v: &str) -> Result<String, ValidationError> {
    let v = v.trim().trim_end_matches('/');
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
        .ok_or_else(|| {
            ValidationError::new(
                field,
                "the controller's URL, starting with http:// or https://",
            )
        })?;
    let ok = !rest.is_empty()
        && !rest.starts_with(':')
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !ok {
        return Err(ValidationError::new(
            field,
            "the controller's URL: scheme, host and port, nothing else (no path)",
        ));
    }
    Ok(v.to_string())
}

/// An API token as a controller makes them (`swt_` and 40 characters of URL-safe base64).
pub fn api_token(field: &str, v: &str) -> Result<String, ValidationError> {
    let v = v.trim();
    let ok = v.strip_prefix(TOKEN_PREFIX).is_some_and(|r| {
        r.len() == 40
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    });
    if ok {
        Ok(v.to_string())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "not an API token: a token starts with '{TOKEN_PREFIX}' \
                 (make one on that site: Settings → API tokens, or `sw token create`)"
            ),
        ))
    }
}

/// Another site of the organization, as the dashboard keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteLink {
    pub name: String,
    pub url: String,
    pub token: String,
}

impl SiteLink {
    /// Checks every field, and that neither the name nor the URL is taken by one of `others`.
    pub fn validate(&self, others: &[SiteLink]) -> Result<SiteLink, ValidationError> {
        let name = site_name("name", self.name.trim())?;
        let url = site_url("url", &self.url)?;
        let token = api_token("token", &self.token)?;
        if others.len() >= MAX_LINKED_SITES {
            return Err(ValidationError::new(
                "name",
                format!("at most {MAX_LINKED_SITES} other sites on one page"),
            ));
        }
        if others.iter().any(|o| o.name.eq_ignore_ascii_case(&name)) {
            return Err(ValidationError::new(
                "name",
                format!("a site named '{name}' is already listed"),
            ));
        }
        if others.iter().any(|o| o.url.eq_ignore_ascii_case(&url)) {
            return Err(ValidationError::new(
                "url",
                format!("{url} is already listed"),
            ));
        }
        Ok(SiteLink { name, url, token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "swt_0123456789abcdefghij-_CDEFGHIJ0123456789";

    fn link(name: &str, url: &str) -> SiteLink {
        SiteLink {
            name: name.into(),
            url: url.into(),
            token: TOKEN.into(),
        }
    }

    #[test]
    fn names_urls_and_tokens() {
        assert!(site_name("n", "lon-1.dc_2").is_ok());
        for bad in ["", "a b", "../x", &"x".repeat(64)] {
            assert_eq!(site_name("n", bad).unwrap_err().field, "n");
        }
        assert_eq!(
            site_url("u", "https://sw.example.net:8443/").unwrap(),
            "https://sw.example.net:8443"
        );
        assert_eq!(
            site_url("u", "http://[fd00::1]:8080").unwrap(),
            "http://[fd00::1]:8080"
        );
        for bad in [
            "ftp://x",
            "http://",
            "http://x/api",
            "http://x?a",
            "x:80",
            "http://:80",
        ] {
            assert!(site_url("u", bad).is_err(), "{bad}");
        }
        assert!(api_token("t", TOKEN).is_ok());
        for bad in [
            "",
            "swt_short",
            "abc_0123456789abcdefghijABCDEFGHIJ0123456789",
        ] {
            assert!(api_token("t", bad).is_err(), "{bad}");
        }
        assert!(api_token("t", &format!("{TOKEN} x")).is_err());
    }

    #[test]
    fn a_site_is_listed_once() {
        let a = link("lon", "http://10.0.0.1:8080").validate(&[]).unwrap();
        let e = link("LON", "http://10.0.0.2:8080")
            .validate(&[a.clone()])
            .unwrap_err();
        assert_eq!(e.field, "name");
        let e = link("par", "http://10.0.0.1:8080/")
            .validate(&[a.clone()])
            .unwrap_err();
        assert_eq!(e.field, "url");
        assert!(link("par", "http://10.0.0.2:8080").validate(&[a]).is_ok());
    }
}
