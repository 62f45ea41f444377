//! A connection string's keywords and values, read from either form libpq takes (a
//! `postgres://` URL or `key=value` pairs) and handed on to `postgres::Config` quoted.

use anyhow::{anyhow, bail, Context, Result};

/// A connection string's keywords and values as libpq reads them, from either form. Values
/// may be secrets: errors here never quote the string.
#[derive(Default)]
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn parse(text: &str) -> Result<Params> {
        let text = text.trim();
        match ["postgresql://", "postgres://"]
            .iter()
            .find_map(|prefix| text.strip_prefix(prefix))
        {
            Some(rest) => Params::parse_url(rest),
            None => Params::parse_keywords(text),
        }
    }

    /// `postgres://[user[:password]@][host][:port][,...][/dbname][?keyword=value&...]`, each
    /// part percent-decoded. A host in `[...]` is an IPv6 address; a host starting with `/`
    /// (written `%2F`) is a socket directory.
    fn parse_url(rest: &str) -> Result<Params> {
        let mut params = Params::default();
        let (authority, rest) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        // The last `@`: a password with an unencoded `@` still works.
        let hosts = match authority.rsplit_once('@') {
            Some((credentials, hosts)) => {
                let (user, password) = match credentials.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (credentials, None),
                };
                params.set("user", percent_decode(user, "user name")?);
                if let Some(password) = password {
                    params.set("password", percent_decode(password, "password")?);
                }
                hosts
            }
            None => authority,
        };
        if !hosts.is_empty() {
            let mut names = Vec::new();
            let mut ports = Vec::new();
            for chunk in hosts.split(',') {
                let (host, port) = match chunk.strip_prefix('[') {
                    Some(inner) => {
                        let (host, after) = inner.split_once(']').context(
                            "invalid URL: an IPv6 address opens `[` but never closes it",
                        )?;
                        match after {
                            "" => (host, None),
                            after => (
                                host,
                                Some(after.strip_prefix(':').context(
                                    "invalid URL: an IPv6 address in `[...]` must be followed \
                                     by `:port` or nothing",
                                )?),
                            ),
                        }
                    }
                    None => match chunk.split_once(':') {
                        Some((host, port)) => (host, Some(port)),
                        None => (chunk, None),
                    },
                };
                names.push(percent_decode(host, "host")?);
                ports.push(percent_decode(port.unwrap_or(""), "port")?);
            }
            if names.iter().any(|name| !name.is_empty()) {
                params.set("host", names.join(","));
            }
            if ports.iter().any(|port| !port.is_empty()) {
                params.set("port", ports.join(","));
            }
        }
        if let Some(dbname) = path.strip_prefix('/') {
            params.set("dbname", percent_decode(dbname, "database name")?);
        }
        for pair in query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
        {
            let (keyword, value) = pair
                .split_once('=')
                .context("invalid URL: a query parameter has no `=`")?;
            let keyword = percent_decode(keyword, "query parameter")?;
            params.set(&keyword, percent_decode(value, "query parameter")?);
        }
        Ok(params)
    }

    /// `keyword=value ...`, whitespace around `=` allowed, a value in single quotes when it
    /// holds spaces, with `\'` and `\\` inside (and `\` escaping any character).
    fn parse_keywords(text: &str) -> Result<Params> {
        let mut params = Params::default();
        let mut chars = text.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.peek().is_none() {
                return Ok(params);
            }
            let mut keyword = String::new();
            while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
                keyword.push(c);
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.next() != Some('=') {
                // Not the keyword itself: it may be a password typed in the wrong place.
                bail!(
                    "invalid connection string: a keyword without `=` (the string is a URL \
                     starting postgres:// or keyword=value pairs)"
                );
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let mut value = String::new();
            if chars.next_if_eq(&'\'').is_some() {
                loop {
                    match chars.next() {
                        None => bail!("invalid connection string: a quoted value is not closed"),
                        Some('\'') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => value.push(c),
                            None => {
                                bail!("invalid connection string: a quoted value is not closed")
                            }
                        },
                        Some(c) => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    if c == '\\' {
                        value.extend(chars.next());
                    } else {
                        value.push(c);
                    }
                }
            }
            params.set(&keyword, value);
        }
    }

    pub(super) fn get(&self, keyword: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v.as_str())
    }

    /// The last value given wins, as in libpq; an empty value is no value.
    pub(super) fn set(&mut self, keyword: &str, value: String) {
        self.0.retain(|(k, _)| k != keyword);
        if !value.is_empty() {
            self.0.push((keyword.to_string(), value));
        }
    }

    pub(super) fn take(&mut self, keyword: &str) -> Option<String> {
        let index = self.0.iter().position(|(k, _)| k == keyword)?;
        Some(self.0.remove(index).1)
    }

    /// The `keyword='value'` string `postgres::Config` parses, every value quoted.
    pub(super) fn to_conninfo(&self) -> String {
        self.0
            .iter()
            .map(|(keyword, value)| {
                format!(
                    "{keyword}='{}'",
                    value.replace('\\', "\\\\").replace('\'', "\\'")
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Undoes `%XY` escapes. `what` names the part in errors; its value is never shown.
fn percent_decode(text: &str, what: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .with_context(|| {
                    format!("invalid URL: a `%` in the {what} is not followed by two hex digits")
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| anyhow!("invalid URL: the {what} is not UTF-8 once percent-decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn params(text: &str) -> Vec<(String, String)> {
        Params::parse(text).unwrap().0
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_urls_as_libpq_does() {
        assert_eq!(
            params(
                "postgresql://al%40ce:p%40ss@db1:5433,[::1]:5434,db3/my%20db\
                 ?sslmode=verify-full&application_name=x"
            ),
            pairs(&[
                ("user", "al@ce"),
                ("password", "p@ss"),
                ("host", "db1,::1,db3"),
                ("port", "5433,5434,"),
                ("dbname", "my db"),
                ("sslmode", "verify-full"),
                ("application_name", "x"),
            ])
        );
        // A password with an unencoded `@`; no port means none, so PGPORT can fill it.
        assert_eq!(
            params("postgres://bob:a@b@db/app"),
            pairs(&[
                ("user", "bob"),
                ("password", "a@b"),
                ("host", "db"),
                ("dbname", "app")
            ])
        );
        assert_eq!(params("postgres://"), pairs(&[]));
        assert_eq!(
            params("postgres:///app?host=%2Fvar%2Frun%2Fpostgresql"),
            pairs(&[("dbname", "app"), ("host", "/var/run/postgresql")])
        );
    }

    #[test]
    fn reads_key_value_strings_with_libpq_quoting() {
        assert_eq!(
            params(r"host = db1 password='it\'s a \\ secret' dbname=app\ x user=''"),
            pairs(&[
                ("host", "db1"),
                ("password", r"it's a \ secret"),
                ("dbname", "app x"),
            ])
        );
        // The last value wins.
        assert_eq!(params("port=1 port=2"), pairs(&[("port", "2")]));
        // What postgres::Config is handed parses back to the same values.
        let tricky = Params(pairs(&[("password", r"a'b\c d"), ("dbname", "x")]));
        let config = postgres::Config::from_str(&tricky.to_conninfo()).unwrap();
        assert_eq!(config.get_password(), Some(&br"a'b\c d"[..]));
    }
}
