use super::*;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn load(args: &[&str]) -> Result<LoadArgs, String> {
    parse_load(&strings(args))
}

fn load_err(args: &[&str]) -> String {
    load(args).map(|_| ()).unwrap_err()
}

#[test]
fn serve_defaults_to_http() {
    let args = parse_serve(&strings(&["--listen", "0.0.0.0:8080", "--name", "v1"])).unwrap();
    assert_eq!(args.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(args.name, "v1");
    assert_eq!(args.protocol, ServeProtocol::Http);
    let grpc = parse_serve(&strings(&["--listen", "[::1]:0", "--name", "g", "--protocol", "grpc"])).unwrap();
    assert_eq!(grpc.protocol, ServeProtocol::Grpc);
}

#[test]
fn serve_errors_name_the_flag() {
    let serve_err = |args: &[&str]| parse_serve(&strings(args)).unwrap_err();
    assert_eq!(serve_err(&["--name", "v1"]), "--listen is required");
    assert_eq!(serve_err(&["--listen", "0.0.0.0:80"]), "--name is required");
    assert!(serve_err(&["--listen", "8080", "--name", "x"]).starts_with("--listen \"8080\""));
    assert!(serve_err(&["--listen", "0.0.0.0:80", "--name", "x", "--protocol", "h3"]).starts_with("--protocol \"h3\""));
    assert_eq!(serve_err(&["--listen", "0.0.0.0:80", "--name", "x", "--nme", "y"]), "unknown flag --nme");
    assert_eq!(serve_err(&["--listen"]), "--listen needs a value");
    assert_eq!(serve_err(&["--name", "a", "--name", "b"]), "--name given twice");
    assert_eq!(serve_err(&["serve"]), "unexpected argument \"serve\"");
}

#[test]
fn load_defaults() {
    let args = load(&["--url", "http://10.1.0.2:8080/hello?x=1", "--count", "5"]).unwrap();
    assert_eq!(args.target.connect, "10.1.0.2:8080");
    assert_eq!(args.target.path, "/hello?x=1");
    assert_eq!(args.authority, "10.1.0.2:8080");
    assert_eq!(args.count, 5);
    assert_eq!(args.concurrency, 1);
    assert_eq!(args.protocol, LoadProtocol::Http1);
    assert_eq!(args.method, Method::GET);
    assert_eq!(args.body_bytes, 0);
    assert_eq!(args.timeout, Duration::from_secs(30));
    assert_eq!(args.deadline, Duration::from_secs(120));
    assert_eq!(args.rate, None);
    assert!(args.headers.is_empty());
    assert!(!args.each);
}

#[test]
fn load_with_everything() {
    let args = load(&[
        "--url",
        "http://reviews:9080",
        "--count",
        "100",
        "--concurrency",
        "4",
        "--protocol",
        "h2c",
        "--header",
        "x-httpapp-key: req-{i}",
        "--header",
        "x-extra:  spaced  ",
        "--authority",
        "reviews.bookinfo.svc.cluster.local:9080",
        "--method",
        "POST",
        "--body-bytes",
        "1024",
        "--timeout-ms",
        "500",
        "--deadline-ms",
        "10000",
        "--rate",
        "250.5",
        "--each",
    ])
    .unwrap();
    assert_eq!(args.target.connect, "reviews:9080");
    assert_eq!(args.target.path, "/");
    assert_eq!(args.protocol, LoadProtocol::H2c);
    assert_eq!(args.concurrency, 4);
    assert_eq!(args.authority, "reviews.bookinfo.svc.cluster.local:9080");
    assert_eq!(args.method, Method::POST);
    assert_eq!(args.body_bytes, 1024);
    assert_eq!(args.timeout, Duration::from_millis(500));
    assert_eq!(args.deadline, Duration::from_secs(10));
    assert_eq!(args.rate, Some(250.5));
    assert!(args.each);
    assert_eq!(args.headers.len(), 2);
    assert_eq!(args.headers[0].name, "x-httpapp-key");
    assert_eq!(args.headers[0].value_for(42), "req-42");
    assert_eq!(args.headers[1].text_for(0), "spaced");
}

#[test]
fn grpc_flags_belong_to_grpc() {
    let args = load(&[
        "--url",
        "http://10.1.0.2:50051",
        "--count",
        "1",
        "--protocol",
        "grpc",
        "--grpc-fail-with",
        "14",
        "--grpc-delay-ms",
        "20",
    ])
    .unwrap();
    assert_eq!((args.grpc_fail_with, args.grpc_delay_ms), (14, 20));
    assert_eq!(
        load_err(&["--url", "http://a:1", "--count", "1", "--grpc-fail-with", "14"]),
        "--grpc-fail-with does not apply to --protocol http1"
    );
    assert_eq!(
        load_err(&["--url", "http://a:1", "--count", "1", "--protocol", "grpc", "--method", "PUT"]),
        "--method does not apply to --protocol grpc"
    );
}

#[test]
fn load_errors_name_the_flag() {
    assert_eq!(load_err(&["--count", "1"]), "--url is required");
    assert_eq!(load_err(&["--url", "http://a:1"]), "--count is required");
    assert_eq!(load_err(&["--url", "http://a:1", "--count", "0"]), "--count must be at least 1");
    assert_eq!(
        load_err(&["--url", "http://a:1", "--count", "1", "--concurrency", "0"]),
        "--concurrency must be at least 1"
    );
    assert!(load_err(&["--url", "http://a:1", "--count", "x"]).starts_with("--count \"x\""));
    assert!(load_err(&["--url", "https://a:1", "--count", "1"]).contains("scheme https is not supported"));
    assert!(load_err(&["--url", "/only/a/path", "--count", "1"]).contains("expected http://"));
    assert!(
        load_err(&["--url", "http://a:1", "--count", "1", "--header", "novalue"]).contains("expected 'name: value'")
    );
    assert!(load_err(&["--url", "http://a:1", "--count", "1", "--header", "bad name: v"]).contains("bad name"));
    assert!(load_err(&["--url", "http://a:1", "--count", "1", "--header", "x: a\u{1}b"]).contains("bad value"));
    assert!(load_err(&["--url", "http://a:1", "--count", "1", "--rate", "0"]).starts_with("--rate \"0\""));
    assert!(load_err(&["--url", "http://a:1", "--count", "1", "--rate", "inf"]).starts_with("--rate \"inf\""));
    assert!(load_err(&["--url", "http://a:1", "--count", "1", "--protocol", "h3"]).starts_with("--protocol \"h3\""));
    assert!(
        load_err(&["--url", "http://a:1", "--count", "1", "--authority", "a b"]).starts_with("--authority \"a b\"")
    );
    assert!(load_err(&["--url", "http://a:1", "--count", "1", "--method", "GE T"]).starts_with("--method \"GE T\""));
    assert_eq!(load_err(&["--url", "http://a:1", "--count", "1", "--each", "yes"]), "unexpected argument \"yes\"");
}

#[test]
fn headers_repeat_but_other_flags_do_not() {
    let args = load(&["--url", "http://a:1", "--count", "1", "--header", "x-a: 1", "--header", "x-a: 2"]).unwrap();
    assert_eq!(args.headers.len(), 2);
    assert_eq!(load_err(&["--url", "http://a:1", "--count", "1", "--count", "2"]), "--count given twice");
}

#[test]
fn upgrade_defaults_and_errors() {
    let args = parse_upgrade(&strings(&["--url", "http://10.96.0.1:9080/ws"])).unwrap();
    assert_eq!((args.target.connect.as_str(), args.authority.as_str()), ("10.96.0.1:9080", "10.96.0.1:9080"));
    assert_eq!((args.bytes, args.timeout), (1024, Duration::from_secs(30)));
    let named =
        parse_upgrade(&strings(&["--url", "http://10.96.0.1:9080/ws", "--authority", "echo:9080", "--bytes", "0"]))
            .unwrap();
    assert_eq!((named.authority.as_str(), named.bytes), ("echo:9080", 0));
    let err = |args: &[&str]| parse_upgrade(&strings(args)).unwrap_err();
    assert_eq!(err(&[]), "--url is required");
    assert!(err(&["--url", "http://a:1/", "--bytes", "many"]).starts_with("--bytes \"many\""));
    assert_eq!(err(&["--url", "http://a:1/", "--count", "1"]), "unknown flag --count");
}
