//! Bad files and the exact error lines they produce.

use super::check;

const FRONT: &str = "[[frontend]]
name = \"web\"
listen = \"0.0.0.0:8000\"
default_backend = \"app\"
";

/// `FRONT` plus `frontend_extra`, an empty line, backend "app" plus `backend_extra`.
fn file(frontend_extra: &str, backend_extra: &str) -> String {
    format!("{FRONT}{frontend_extra}\n[[backend]]\nname = \"app\"\n{backend_extra}")
}

/// Backend "app" with one server "a" whose last lines are `server_extra`;
/// the server's keys start at line 9.
fn server(server_extra: &str) -> String {
    file(
        "",
        &format!("[[backend.server]]\nname = \"a\"\naddress = \"a:1\"\n{server_extra}"),
    )
}

#[test]
fn serde_stops_at_the_first_syntax_or_type_error() {
    let cases = [
        (
            file("", "colour = \"red\"\n"),
            "test.toml:8:1: backend[app].colour: unknown field `colour`, expected one of `name`, \
             `balance`, `host`, `retries`, `timeouts`, `passive_fall`, `drain_to_maint`, \
             `tls`, `max_body`, `cookie`, `check`, `request_headers`, `response_headers`, `discover`, `server`",
        ),
        (
            server("wieght = 2\n"),
            "test.toml:11:1: backend[app].server[a].wieght: unknown field `wieght`, expected one \
             of `name`, `address`, `weight`, `state`, `backup`",
        ),
        (
            server("weight = \"2\"\n"),
            "test.toml:11:10: backend[app].server[a].weight: invalid type: string \"2\", \
             expected an integer",
        ),
        (
            server("weight = 1.5\n"),
            "test.toml:11:10: backend[app].server[a].weight: invalid type: floating point \
             `1.5`, expected an integer",
        ),
        (
            file("", "timeouts = { connect = 5 }\n"),
            "test.toml:8:24: backend[app].timeouts.connect: invalid type: integer `5`, \
             expected a string",
        ),
        (
            file("", "drain_to_maint = \"yes\"\n"),
            "test.toml:8:18: backend[app].drain_to_maint: invalid type: string \"yes\", \
             expected a boolean",
        ),
        (
            "[[frontend]]\nname = \"web\nlisten = \"0.0.0.0:8000\"\n".to_owned(),
            "test.toml:2:12: invalid basic string, expected `\"`",
        ),
        (
            file("[[frontend.route]]\nhots = \"a.com\"\n", ""),
            "test.toml:6:1: frontend[web].route[0].hots: unknown field `hots`, expected one of \
             `host`, `path_prefix`, `backend`, `split`, `path`, `path_regex`, `methods`, \
             `headers`, `cookies`, `query`, `redirect`, `respond`, `deny`, `rewrite`, \
             `request_headers`, `response_headers`, `timeouts`",
        ),
        (
            file(
                "[[frontend.route]]\nhost = \"a.com\"\nsplit = { app = \"1\" }\n",
                "",
            ),
            "test.toml:7:17: frontend[web].route[0].split.app: invalid type: string \"1\", \
             expected an integer",
        ),
        (
            "[global]\n[global]\n".to_owned(),
            "test.toml:2:2: duplicate key",
        ),
        (
            "frontend = 3\n".to_owned(),
            "test.toml:1:12: frontend: invalid type: integer `3`, expected a sequence",
        ),
    ];
    for (source, expected) in cases {
        check(&source, expected);
    }
}

#[test]
fn semantic_errors() {
    let cases = [
        (
            "[global]\ngrace = \"10s\"\n".to_owned(),
            "test.toml: frontend: expected at least one [[frontend]] table",
        ),
        (
            file(
                "[[frontend.route]]\npath_prefix = \"/api\"\nbackend = \"users\"\n",
                "",
            ),
            "test.toml:7:11: frontend[web].route[0].backend: unknown backend \"users\"; \
             expected one of: app",
        ),
        (
            file("", "[[backend]]\nname = \"app\"\n"),
            "test.toml:9:8: backend[app].name: duplicate backend name \"app\" \
             (first used at line 7); expected a unique one",
        ),
        (
            server("[[backend.server]]\nname = \"a\"\naddress = \"b:1\"\n"),
            "test.toml:12:8: backend[app].server[a].name: duplicate server name \"a\" \
             (first used at line 9); expected a unique one",
        ),
        (
            server("weight = 300\n"),
            "test.toml:11:10: backend[app].server[a].weight: expected an integer from 0 to 256, \
             got 300",
        ),
        (
            server("state = \"up\"\n"),
            "test.toml:11:9: backend[app].server[a].state: expected \"ready\", \"drain\" or \
             \"maint\", got \"up\"",
        ),
        (
            file("", "timeouts = { connect = \"5 parsecs\" }\n"),
            "test.toml:8:24: backend[app].timeouts.connect: expected a duration like \"5s\" or \
             \"250ms\" (units us, ms, s, m, h), got \"5 parsecs\"",
        ),
        (
            file("timeouts = { idle = \"0s\" }\n", ""),
            "test.toml:5:21: frontend[web].timeouts.idle: expected a duration from 1ms to 168h \
             (7 days), got \"0s\"",
        ),
        (
            file(
                "",
                "[[backend.server]]\nname = \"a\"\naddress = \"users\"\n",
            ),
            "test.toml:10:11: backend[app].server[a].address: expected host:port like \
             \"users:8080\" or \"[::1]:8080\", got \"users\" (no port)",
        ),
        (
            file("", "[[backend.server]]\nname = \"a\"\n"),
            "test.toml:8:1: backend[app].server[a].address: required key is missing",
        ),
        (
            file(
                "",
                "[[backend.server]]\nname = \"a\"\naddress = \"::1:80\"\n\
                 [[backend.server]]\nname = \"b\"\naddress = \"users:0\"\n\
                 [[backend.server]]\nname = \"c\"\naddress = \"users:70000\"\n\
                 [[backend.server]]\nname = \"d\"\naddress = \"[::1\"\n\
                 [[backend.server]]\nname = \"e\"\naddress = \"bad host:80\"\n",
            ),
            "test.toml:10:11: backend[app].server[a].address: expected an IPv6 address in \
             brackets like \"[::1]:8080\", got \"::1:80\"\n\
             test.toml:13:11: backend[app].server[b].address: expected a port from 1 to 65535, \
             got \"0\"\n\
             test.toml:16:11: backend[app].server[c].address: expected a port from 1 to 65535, \
             got \"70000\"\n\
             test.toml:19:11: backend[app].server[d].address: expected ']' after the IPv6 \
             address in \"[::1\"\n\
             test.toml:22:11: backend[app].server[e].address: expected a host name or IP \
             address like \"users\" or \"10.0.0.5\", got \"bad host\"",
        ),
        (
            "[[frontend]]\nname = \"web\"\nlisten = \"localhost:8000\"\n".to_owned(),
            "test.toml:3:10: frontend[web].listen: expected an IP address and port like \
             \"0.0.0.0:8000\" or \"[::1]:8000\", got \"localhost:8000\"",
        ),
        (
            "[[frontend]]\nname = \"a\"\nlisten = \"0.0.0.0:80\"\n\
             [[frontend]]\nname = \"a\"\nlisten = \"0.0.0.0:80\"\n\
             [[frontend]]\nname = \"c\"\nlisten = \"127.0.0.1:8001\"\n"
                .to_owned(),
            "test.toml:5:8: frontend[a].name: duplicate frontend name \"a\" (first used at \
             line 2); expected a unique one\n\
             test.toml:6:10: frontend[a].listen: duplicate listen address 0.0.0.0:80 (first \
             used at line 3); expected a unique one\n\
             test.toml:9:10: frontend[c].listen: 127.0.0.1:8001 is the admin listen address; \
             expected another",
        ),
        (
            // Port 0 asks for a fresh port, so it may repeat.
            "[admin]\nlisten = \"0.0.0.0:80\"\n\
             [[frontend]]\nname = \"a\"\nlisten = \"0.0.0.0:80\"\n\
             [[frontend]]\nname = \"b\"\nlisten = \"127.0.0.1:0\"\n\
             [[frontend]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\n"
                .to_owned(),
            "test.toml:5:10: frontend[a].listen: duplicate listen address 0.0.0.0:80 (first \
             used at line 2); expected a unique one",
        ),
        (
            "[[frontend]]\nlisten = \"0.0.0.0:80\"\n[[frontend]]\nname = \"my web\"\n".to_owned(),
            "test.toml:1:1: frontend[#0].name: required key is missing\n\
             test.toml:3:1: frontend[#1].listen: required key is missing\n\
             test.toml:4:8: frontend[#1].name: expected a name of letters, digits, '_', '.' \
             and '-', got \"my web\"",
        ),
        (
            file(
                "[[frontend.route]]\nhost = \"a.com\"\nbackend = \"app\"\nsplit = { app = 1 }\n\
                 [[frontend.route]]\nhost = \"b.com\"\n\
                 [[frontend.route]]\nbackend = \"app\"\n",
                "",
            ),
            "test.toml:8:9: frontend[web].route[0].split: expected one of backend, split, \
             redirect, respond or deny, got backend and split\n\
             test.toml:9:1: frontend[web].route[1]: expected a `backend`, `split`, `redirect`, `respond` or `deny` key\n\
             test.toml:11:1: frontend[web].route[2]: matches every request: use \
             default_backend, or add a condition (host, path_prefix, path, path_regex, methods, \
             headers, cookies or query)",
        ),
        (
            file(
                "[[frontend.route]]\nhost = \"a.com\"\nsplit = { app = 0, new = 5 }\n\
                 [[frontend.route]]\nhost = \"b.com\"\nsplit = { app = 0 }\n\
                 [[frontend.route]]\nhost = \"c.com\"\nsplit = {}\n\
                 [[frontend.route]]\nhost = \"d.com\"\nsplit = { app = 257 }\n",
                "",
            ),
            "test.toml:7:20: frontend[web].route[0].split.new: unknown backend \"new\"; \
             expected one of: app\n\
             test.toml:10:9: frontend[web].route[1].split: expected at least one weight above 0\n\
             test.toml:13:9: frontend[web].route[2].split: expected at least one backend, like \
             { monolith = 90, users = 10 }\n\
             test.toml:16:17: frontend[web].route[3].split.app: expected an integer from 0 to \
             256, got 257",
        ),
        (
            file(
                "[[frontend.route]]\nhost = \"a.com:80\"\nbackend = \"app\"\n\
                 [[frontend.route]]\nhost = \"*\"\nbackend = \"app\"\n\
                 [[frontend.route]]\nhost = \"a/b\"\nbackend = \"app\"\n\
                 [[frontend.route]]\npath_prefix = \"api\"\nbackend = \"app\"\n\
                 [[frontend.route]]\npath_prefix = \"/a b?\"\nbackend = \"app\"\n",
                "",
            ),
            "test.toml:6:8: frontend[web].route[0].host: expected a host without a port \
             (routes match any port), got \"a.com:80\"\n\
             test.toml:9:8: frontend[web].route[1].host: expected a host like \
             \"shop.example.com\" or \"*.example.com\", got \"*\"\n\
             test.toml:12:8: frontend[web].route[2].host: expected a host like \
             \"shop.example.com\" or \"*.example.com\", got \"a/b\"\n\
             test.toml:15:15: frontend[web].route[3].path_prefix: expected a path starting \
             with '/', got \"api\"\n\
             test.toml:18:15: frontend[web].route[4].path_prefix: expected a path without \
             whitespace, '?' or '#', got \"/a b?\"",
        ),
        (
            file(
                "",
                "check = { kind = \"http\", method = \"POST\", path = \"health\", \
                 expect = \"600\" }\n",
            ),
            "test.toml:8:35: backend[app].check.method: expected \"GET\", \"HEAD\" or \
             \"OPTIONS\", got \"POST\"\n\
             test.toml:8:50: backend[app].check.path: expected a path starting with '/' and \
             without whitespace, got \"health\"\n\
             test.toml:8:69: backend[app].check.expect: expected a status \"NNN\" or a range \
             \"NNN-NNN\" within 100-599, like \"200-399\", got \"600\"",
        ),
        (
            file(
                "",
                "check = { kind = \"http\", expect = \"399-200\", interval = \"0ms\", rise = 0 }\n",
            ),
            "test.toml:8:35: backend[app].check.expect: expected a status \"NNN\" or a range \
             \"NNN-NNN\" within 100-599, like \"200-399\", got \"399-200\"\n\
             test.toml:8:57: backend[app].check.interval: expected a duration from 1ms to 168h \
             (7 days), got \"0ms\"\n\
             test.toml:8:71: backend[app].check.rise: expected an integer from 1 to 1000, got 0",
        ),
        (
            file(
                "",
                "check = { kind = \"tcp\", path = \"/health\", expect = \"200\" }\n",
            ),
            "test.toml:8:32: backend[app].check.path: applies only to kind = \"http\"; remove \
             it or set kind = \"http\"\n\
             test.toml:8:52: backend[app].check.expect: applies only to kind = \"http\"; remove \
             it or set kind = \"http\"",
        ),
        (
            file("", "check = { kind = \"udp\" }\n"),
            "test.toml:8:18: backend[app].check.kind: expected \"http\" or \"tcp\", got \"udp\"",
        ),
        (
            file("", "check = { interval = \"1s\" }\n"),
            "test.toml:8:9: backend[app].check.kind: required key is missing",
        ),
        (
            file("", "cookie = { name = \"SERVER ID\" }\n"),
            "test.toml:8:19: backend[app].cookie.name: expected a cookie name of letters, \
             digits and !#$%&'*+-.^_`|~, got \"SERVER ID\"",
        ),
        (
            file("", "cookie = {}\n"),
            "test.toml:8:10: backend[app].cookie.name: required key is missing",
        ),
        (
            file(
                "",
                "balance = \"random\"\nretries = 11\nhost = \"a b\"\npassive_fall = -1\n",
            ),
            "test.toml:8:11: backend[app].balance: expected \"roundrobin\" or \"leastconn\", \
             got \"random\"\n\
             test.toml:9:11: backend[app].retries: expected an integer from 0 to 10, got 11\n\
             test.toml:10:8: backend[app].host: expected a host name or IP address like \
             \"users\" or \"10.0.0.5\", got \"a b\"\n\
             test.toml:11:16: backend[app].passive_fall: expected an integer from 0 to 1000, \
             got -1",
        ),
        (
            format!(
                "[global]\naccess_log = \"xml\"\nmax_connections = 0\nstate_file = \"\"\n\
                 grace = \"forever\"\n[admin]\nlisten = \"8001\"\n{}",
                file("", "")
            ),
            "test.toml:2:14: global.access_log: expected \"text\", \"json\" or \"off\", \
             got \"xml\"\n\
             test.toml:3:19: global.max_connections: expected an integer from 1 to 1000000, got 0\n\
             test.toml:4:14: global.state_file: expected a file path, got an empty string\n\
             test.toml:5:9: global.grace: expected a duration like \"5s\" or \"250ms\" (units \
             us, ms, s, m, h), got \"forever\"\n\
             test.toml:7:10: admin.listen: expected an IP address and port like \
             \"0.0.0.0:8000\" or \"[::1]:8000\", got \"8001\"",
        ),
        (
            file(
                "",
                "discover = { dns = \"10.0.0.5:8080\", every = \"500ms\", max = 0 }\n",
            ),
            "test.toml:8:20: backend[app].discover.dns: expected a DNS name and port like \
             \"users:8080\", got the IP address \"10.0.0.5:8080\"; list it as a [[backend.server]]\n\
             test.toml:8:45: backend[app].discover.every: expected a duration from 1s to 168h \
             (7 days), got \"500ms\"\n\
             test.toml:8:60: backend[app].discover.max: expected an integer from 1 to 1024, got 0",
        ),
        (
            file("", "discover = { max = 2 }\n"),
            "test.toml:8:12: backend[app].discover.dns: required key is missing",
        ),
        (
            file(
                "",
                "discover = { dns = \"app.internal:80\", max = 3 }\n\
                 [[backend.server]]\nname = \"app-2\"\naddress = \"10.0.0.9:80\"\n\
                 [[backend.server]]\nname = \"app-4\"\naddress = \"10.0.0.8:80\"\n",
            ),
            "test.toml:10:8: backend[app].server[app-2].name: the name \"app-2\" is a slot of \
             discover = { dns = \"app.internal:80\" } (app-1 to app-3); expected another name",
        ),
        (
            format!(
                "[global]\nresolvers = [\"dns:53\", \"10.0.0.2:0\"]\n{}",
                file("", "")
            ),
            "test.toml:2:14: global.resolvers: expected a name server's IP address and port \
             like \"10.0.0.2:53\", got \"dns:53\"\n\
             test.toml:2:24: global.resolvers: expected a name server's IP address and port \
             like \"10.0.0.2:53\", got \"10.0.0.2:0\"",
        ),
    ];
    for (source, expected) in cases {
        check(&source, expected);
    }
}

#[test]
fn three_independent_errors_are_all_reported_in_file_order() {
    // Backends are validated before frontends; the report is still in file order.
    let source = r#"
[[frontend]]
name = "web"
listen = "0.0.0.0:8000"
default_backend = "monolth"

[[backend]]
name = "monolith"
timeouts = { connect = "5 parsecs" }

  [[backend.server]]
  name = "old-1"
  address = "monolith"
"#;
    check(
        source,
        "test.toml:5:19: frontend[web].default_backend: unknown backend \"monolth\"; expected \
         one of: monolith\n\
         test.toml:9:24: backend[monolith].timeouts.connect: expected a duration like \"5s\" or \
         \"250ms\" (units us, ms, s, m, h), got \"5 parsecs\"\n\
         test.toml:13:13: backend[monolith].server[old-1].address: expected host:port like \
         \"users:8080\" or \"[::1]:8080\", got \"monolith\" (no port)",
    );
}

#[test]
fn routing_rule_errors_point_at_the_value() {
    let route = |body: &str| {
        file(
            &format!("[[frontend.route]]\npath_prefix = \"/a\"\n{body}"),
            "",
        )
    };
    let cases = [
        (
            route("backend = \"app\"\npath_regex = \"^/v[0-9+/\"\n"),
            "test.toml:8:14: frontend[web].route[0].path_regex: invalid regex: regex parse \
             error: ^/v[0-9+/ ^ error: unclosed character class",
        ),
        (
            route("backend = \"app\"\nrequest_headers = { set = { \"X-A\" = \"{client}\" } }\n"),
            "test.toml:8:37: frontend[web].route[0].request_headers.set.X-A: unknown variable \
             {client}; expected one of {client_ip}, {request_id}, {host}, {frontend}, \
             {backend}, {server}",
        ),
        (
            route("backend = \"app\"\nrequest_headers = { add = { \"X-S\" = \"{server}\" } }\n"),
            "test.toml:8:37: frontend[web].route[0].request_headers.add.X-S: {server} is known \
             only in response_headers; the server is not chosen yet",
        ),
        (
            route("backend = \"app\"\nrewrite = { regex = \"^/v1/(.*)$\", to = \"$1\" }\n"),
            "test.toml:8:40: frontend[web].route[0].rewrite.to: the rewritten path must start \
             with '/', got \"$1\"; a path without '/' cannot be forwarded",
        ),
        (
            route(
                "backend = \"app\"\nrewrite = { replace_prefix = { from = \"/a\", to = \"b\" } }\n",
            ),
            "test.toml:8:50: frontend[web].route[0].rewrite.replace_prefix.to: the rewritten \
             path must start with '/', got \"b\"; a path without '/' cannot be forwarded",
        ),
        (
            route("backend = \"app\"\nrewrite = { regex = \"^/v1/(.*)$\", to = \"/$2\" }\n"),
            "test.toml:8:40: frontend[web].route[0].rewrite.to: $2 names no group: the regex \
             has 1 capture group(s)",
        ),
        (
            route("backend = \"app\"\nrequest_headers = { set = { Connection = \"close\" } }\n"),
            "test.toml:8:29: frontend[web].route[0].request_headers.set.Connection: connection \
             is a hop-by-hop or framing header, which the proxy manages; it cannot be set or \
             added",
        ),
        (
            file(
                "",
                "response_headers = { add = { \"Transfer-Encoding\" = \"gzip\" } }\n",
            ),
            "test.toml:8:30: backend[app].response_headers.add.Transfer-Encoding: \
             transfer-encoding is a hop-by-hop or framing header, which the proxy manages; it \
             cannot be set or added",
        ),
        (
            route("redirect = { to = \"https://x\", code = 200 }\n"),
            "test.toml:7:39: frontend[web].route[0].redirect.code: expected 301, 302, 303, 307 \
             or 308, got 200",
        ),
        (
            route("respond = { status = 503, body_file = \"no-such-file.html\" }\n"),
            "test.toml:7:39: frontend[web].route[0].respond.body_file: cannot read \
             no-such-file.html: No such file or directory (os error 2)",
        ),
        (
            route("deny = true\nmethods = [\"get\"]\n"),
            "test.toml:8:12: frontend[web].route[0].methods: expected an upper-case method like \
             \"GET\", got \"get\"",
        ),
        (
            format!(
                "[global]\ntrusted_proxies = [\"10.0.0.0/33\"]\n{}",
                file("", "")
            ),
            "test.toml:2:20: global.trusted_proxies: expected a prefix length in 0..=32 after \
             '/', got \"33\" in \"10.0.0.0/33\"",
        ),
        (
            format!("[errors]\n500 = \"x.html\"\n{}", file("", "")),
            "test.toml:2:1: errors.500: expected 502, 503 or 504 (the failures the proxy \
             answers itself), got \"500\"",
        ),
    ];
    for (source, expected) in cases {
        check(&source, expected);
    }
}

#[test]
fn request_id_forms() {
    let cases = [
        (
            format!(
                "[global]\nrequest_id = {{ header = \"bad header\" }}\n{}",
                file("", "")
            ),
            "test.toml:2:25: global.request_id.header: expected a header name like \
             \"X-Request-Id\", got \"bad header\"",
        ),
        (
            format!(
                "[global]\nrequest_id = {{ heder = \"X-Id\" }}\n{}",
                file("", "")
            ),
            "test.toml:2:16: global.request_id.heder: unknown field `heder`, expected `header`",
        ),
        (
            format!("[global]\nrequest_id = \"yes\"\n{}", file("", "")),
            "test.toml:2:14: global.request_id: invalid type: string \"yes\", expected true, \
             false or a table like { header = \"X-Request-Id\" }",
        ),
    ];
    for (source, expected) in cases {
        check(&source, expected);
    }
}

#[test]
fn peers_forms() {
    let admin = |body: &str| format!("[admin]\n{body}\n{}", file("", ""));
    let with_token = |peers: &str| admin(&format!("token_file = \"t\"\npeers = {peers}"));
    let cases = [
        (
            with_token("[\"10.0.0.3\"]"),
            "test.toml:3:9: admin.peers: expected \"host:port\" like \"10.0.0.3:8001\", got \
             \"10.0.0.3\"",
        ),
        (
            with_token("[]"),
            "test.toml:3:9: admin.peers: expected at least one address; leave peers out to run \
             alone",
        ),
        (
            with_token("[\"a:1\", \"a:1\"]"),
            "test.toml:3:9: admin.peers: duplicate peer a:1; expected each once",
        ),
        (
            with_token("8001"),
            "test.toml:3:9: admin.peers: invalid type: integer `8001`, expected an address \
             like \"10.0.0.3:8001\" or a list of them",
        ),
        (
            admin("token_file = \"t\"\nreplica = \"a b\""),
            "test.toml:3:11: admin.replica: expected a name of 1-64 letters, digits, '-', '_' \
             or '.', got \"a b\"",
        ),
    ];
    for (source, expected) in cases {
        check(&source, expected);
    }
    // Peers authenticate with the shared token: without token_file (and
    // without the token in the environment) the file is refused.
    if std::env::var("SWITCHYARD_ADMIN_TOKEN").is_err() {
        check(
            &admin("peers = \"switchyard-peers:8001\""),
            "test.toml:2:9: admin.peers: peers need the admin token every replica shares; set \
             admin.token_file (or SWITCHYARD_ADMIN_TOKEN in the environment)",
        );
    }
}

#[test]
fn peers_take_names_and_addresses() {
    let source = format!(
        "[admin]\ntoken_file = \"t\"\nreplica = \"lb-1\"\npeers = [\"10.0.0.3:8001\", \
         \"[fd00::3]:8001\", \"switchyard-peers:8001\"]\n{}",
        file("", "")
    );
    let t = super::parse_ok(&source);
    let peers: Vec<String> = t.admin.peers.iter().map(ToString::to_string).collect();
    assert_eq!(
        peers,
        ["10.0.0.3:8001", "[fd00::3]:8001", "switchyard-peers:8001"]
    );
    assert_eq!(t.admin.replica.as_deref(), Some("lb-1"));
}
