//! HAProxy values in Switchyard's spelling: times, listen and server
//! addresses, names and header-value templates.
//! Invariant: a value is converted only when the result means the same;
//! otherwise the caller gets the reason.

/// An HAProxy time (`5000`, `5s`, `1m`, `1d`; milliseconds by default) as a
/// Switchyard duration. `Ok(None)` for HAProxy's `0`, which means "no
/// timeout".
pub fn duration(s: &str) -> Result<Option<String>, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = s.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a time (a number with an optional unit)"))?;
    let text = match unit {
        "" => format!("{n}ms"),
        "us" | "ms" | "s" | "m" | "h" => format!("{n}{unit}"),
        "d" => format!("{}h", n * 24),
        _ => return Err(format!("unexpected unit in time '{s}'")),
    };
    Ok((n > 0).then_some(text))
}

/// A `bind` address (`*:80`, `:80`, `10.0.0.1:80`, `:::80`, `ipv6@[::1]:80`)
/// as a socket address.
pub fn listen(addr: &str) -> Result<String, String> {
    let addr = addr
        .strip_prefix("ipv4@")
        .or_else(|| addr.strip_prefix("ipv6@"))
        .unwrap_or(addr);
    if addr.starts_with('/') || addr.contains('@') {
        return Err("Switchyard listens on TCP addresses only".into());
    }
    let (host, port) = split_port(addr).ok_or("no port")?;
    if port.contains('-') {
        return Err("port ranges are not supported; a frontend listens on one port".into());
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|_| port.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("'{port}' is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(match host {
        "" | "*" | "0.0.0.0" => format!("0.0.0.0:{port}"),
        h if h.parse::<std::net::Ipv4Addr>().is_ok() => format!("{h}:{port}"),
        h if h.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{h}]:{port}"),
        h => {
            return Err(format!(
                "'{h}' is not an IP address; Switchyard listens on IP addresses"
            ));
        }
    })
}

/// A `server` address as a Switchyard server address.
pub fn server(addr: &str) -> Result<String, String> {
    let addr = addr
        .strip_prefix("ipv4@")
        .or_else(|| addr.strip_prefix("ipv6@"))
        .unwrap_or(addr);
    if addr.starts_with('/') || addr.contains('@') {
        return Err("Switchyard connects to TCP addresses only".into());
    }
    let no_port =
        || "no port: HAProxy reuses the client's destination port, Switchyard needs one".to_owned();
    let (host, port) = split_port(addr).ok_or_else(no_port)?;
    if port.is_empty() {
        return Err(no_port());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => return Err(format!("port '{port}' is not a fixed port from 1 to 65535")),
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok(match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    })
}

/// Host and port at the last colon; IPv6 hosts may be bracketed.
fn split_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    addr.rsplit_once(':')
}

/// Whether `name` is a valid Switchyard name.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// An HAProxy log-format header value as a Switchyard template: `%[src]` ->
/// `{client_ip}`, `%[unique-id]` -> `{request_id}`, `%[req.hdr(host)]` ->
/// `{host}`, `%f` -> `{frontend}`, `%b` -> `{backend}`, `%s` -> `{server}`
/// (responses only), `%%` -> `%`.
pub fn template(value: &str, is_response: bool) -> Result<String, String> {
    if value.contains(['{', '}']) {
        return Err("braces mark template variables in Switchyard".into());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let known: &[(&str, &str)] = &[
            ("%%", "%"),
            ("%[src]", "{client_ip}"),
            ("%ci", "{client_ip}"),
            ("%[unique-id]", "{request_id}"),
            ("%ID", "{request_id}"),
            ("%[req.hdr(host)]", "{host}"),
            ("%[hdr(host)]", "{host}"),
            ("%f", "{frontend}"),
            ("%b", "{backend}"),
            ("%s", "{server}"),
        ];
        let Some((from, to)) = known.iter().find(|(from, _)| rest.starts_with(from)) else {
            let shown: String = rest.chars().take(24).collect();
            return Err(format!(
                "the expression '{shown}' has no Switchyard template variable"
            ));
        };
        if *from == "%s" && !is_response {
            return Err("%s (the server) is known only for responses".into());
        }
        out.push_str(to);
        rest = &rest[from.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_or_explain() {
        let table: &[(&str, Result<Option<&str>, &str>)] = &[
            ("5000", Ok(Some("5000ms"))),
            ("5s", Ok(Some("5s"))),
            ("2d", Ok(Some("48h"))),
            ("0", Ok(None)),
            ("5x", Err("unexpected unit")),
            ("s", Err("not a time")),
        ];
        for (input, want) in table {
            let got = duration(input);
            match want {
                Ok(w) => assert_eq!(got.as_ref().map(Option::as_deref), Ok(*w), "{input}"),
                Err(part) => assert!(got.is_err_and(|e| e.contains(part)), "{input}"),
            }
        }
        assert_eq!(listen("*:80").as_deref(), Ok("0.0.0.0:80"));
        assert_eq!(listen(":8000").as_deref(), Ok("0.0.0.0:8000"));
        assert_eq!(listen(":::443").as_deref(), Ok("[::]:443"));
        assert_eq!(listen("127.0.0.1:8001").as_deref(), Ok("127.0.0.1:8001"));
        assert!(listen("web.local:80").is_err());
        assert!(listen("/var/run/x.sock").is_err());
        assert_eq!(server("10.0.0.1:8080").as_deref(), Ok("10.0.0.1:8080"));
        assert_eq!(server("app:80").as_deref(), Ok("app:80"));
        assert_eq!(server("ipv6@::1:80").as_deref(), Ok("[::1]:80"));
        assert!(server("10.0.0.1").is_err_and(|e| e.contains("no port")));
        assert!(server("10.0.0.1:+1").is_err());
        assert_eq!(
            template("%[src] via %f", false).as_deref(),
            Ok("{client_ip} via {frontend}")
        );
        assert_eq!(template("100%%", false).as_deref(), Ok("100%"));
        assert!(template("%[ssl_fc]", false).is_err());
        assert!(template("%s", false).is_err());
        assert_eq!(template("%s", true).as_deref(), Ok("{server}"));
    }
}
