//! The runtime matrix: one request mix (`loupe_tests::matrix`) against
//! servers of every common runtime, each counted exactly per method,
//! endpoint and status, with the slow endpoint's duration and the streamed
//! one's first byte. Every server is installed by `cargo xtask setup`
//! (Debian, PyPI and npm packages); a missing one fails its test. Root
//! required.
use std::{fs, path::PathBuf};

use loupe_tests::{
    Agent, Nginx, free_port,
    matrix::{self, Features, ITEMS},
    served, targets, workspace,
};

fn fixtures() -> PathBuf {
    workspace().join("tests/fixtures/runtimes")
}

fn node_modules() -> PathBuf {
    workspace().join("target/tools/node_modules")
}

/// An agent on the listener of `port` as `service`, once it tracks
/// `processes` of it (a pre-forking server's workers too).
fn watch(port: u16, service: &str, processes: f64) -> Agent {
    let agent = Agent::start(&[
        "--port",
        &port.to_string(),
        "--service",
        service,
        "--route",
        ITEMS,
    ]);
    agent.wait_for(&targets(service), processes);
    agent
}

/// Starts `command` (with `{port}` and `{dir}` filled in), runs the mix
/// and checks the counts.
fn runtime(service: &str, command: &str, processes: f64, features: Features) {
    let port = free_port();
    let command = command
        .replace("{port}", &port.to_string())
        .replace("{dir}", &fixtures().display().to_string())
        .replace("{node_modules}", &node_modules().display().to_string());
    let _server = served(&command, port);
    let agent = watch(port, service, processes);
    let (expected, idle) = matrix::run(port, features);
    matrix::check(&agent, service, &expected);
    drop(idle);
}

#[test]
fn fastapi_under_uvicorn_asyncio_h11() {
    runtime(
        "uvicorn-h11",
        "python3 -m uvicorn asgi_app:app --app-dir {dir} --host 127.0.0.1 --port {port} \
         --loop asyncio --http h11 --no-access-log",
        1.0,
        Features::ALL,
    );
}

#[test]
fn fastapi_under_uvicorn_uvloop_httptools() {
    runtime(
        "uvicorn-uvloop",
        "python3 -m uvicorn asgi_app:app --app-dir {dir} --host 127.0.0.1 --port {port} \
         --loop uvloop --http httptools --no-access-log",
        1.0,
        Features::ALL,
    );
}

#[test]
fn fastapi_under_hypercorn() {
    runtime(
        "hypercorn",
        "cd {dir} && python3 -m hypercorn asgi_app:app --bind 127.0.0.1:{port}",
        // The supervisor, its worker and multiprocessing's resource tracker.
        3.0,
        Features::ALL,
    );
}

#[test]
fn flask_under_gunicorn_sync_workers() {
    runtime(
        "gunicorn-flask",
        "python3 -m gunicorn wsgi_app:app --chdir {dir} --workers 2 --bind 127.0.0.1:{port}",
        3.0,
        Features::ALL,
    );
}

#[test]
fn django_under_gunicorn() {
    runtime(
        "gunicorn-django",
        "python3 -m gunicorn django_app --chdir {dir} --workers 2 --bind 127.0.0.1:{port}",
        3.0,
        Features::ALL,
    );
}

#[test]
fn aiohttp_server() {
    runtime(
        "aiohttp",
        "python3 {dir}/aiohttp_app.py {port}",
        1.0,
        Features::ALL,
    );
}

#[test]
fn node_http_write_head_and_end() {
    runtime(
        "node-writehead",
        "node {dir}/node_http.js {port} writehead",
        1.0,
        Features::ALL,
    );
}

#[test]
fn node_http_set_header_and_end() {
    runtime(
        "node-setheader",
        "node {dir}/node_http.js {port} setheader",
        1.0,
        Features::ALL,
    );
}

#[test]
fn node_express() {
    runtime(
        "express",
        "NODE_PATH={node_modules} node {dir}/node_express.js {port}",
        1.0,
        Features::ALL,
    );
}

#[test]
fn node_fastify() {
    runtime(
        "fastify",
        "NODE_PATH={node_modules} node {dir}/node_fastify.js {port}",
        1.0,
        Features::ALL,
    );
}

#[test]
fn java_com_sun_net_httpserver() {
    runtime(
        "java-httpserver",
        "java {dir}/JavaServer.java {port}",
        1.0,
        Features::ALL,
    );
}

fn go_build(file: &str, name: &str) -> PathBuf {
    loupe_tests::go_build(&fixtures().join(file), name)
}

#[test]
fn go_net_http() {
    let binary = go_build("server.go", "matrix-go-server");
    runtime(
        "go-net-http",
        &format!("{} {{port}}", binary.display()),
        1.0,
        Features::ALL,
    );
}

#[test]
fn ruby_webrick() {
    runtime(
        "webrick",
        "ruby {dir}/webrick_app.rb {port}",
        1.0,
        Features::NO_STREAM,
    );
}

#[test]
fn php_built_in_server() {
    runtime(
        "php-builtin",
        "php -S 127.0.0.1:{port} {dir}/index.php",
        1.0,
        Features::NO_STREAM,
    );
}

#[test]
fn nginx_static_and_return() {
    let port = free_port();
    let nginx = Nginx::start(
        port,
        "location ~ ^/items/missing { return 404 '{\"detail\":\"not found\"}'; }\n\
         location ~ ^/items/ { if ($request_method = DELETE) { return 204; } \
         return 200 '{\"id\":1}'; }\n\
         location = /items { return 201 '{\"created\":true}'; }\n\
         location = /fail { return 500 '{\"error\":\"boom\"}'; }\n\
         location = /large { }",
    );
    fs::write(nginx.root().join("large"), vec![b'x'; 250_000]).expect("write /large");
    // The master and its two workers.
    let agent = watch(port, "nginx", 3.0);
    let (expected, idle) = matrix::run(port, Features::STATIC);
    matrix::check(&agent, "nginx", &expected);
    drop(idle);
}

#[test]
fn ruby_puma() {
    runtime(
        "puma",
        "cd {dir} && puma --silent -b tcp://127.0.0.1:{port} config.ru",
        1.0,
        Features::ALL,
    );
}

/// A scratch directory for a server's configuration and files.
fn scratch(tag: &str) -> PathBuf {
    let dir = loupe_tests::scratch_file(tag);
    fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

#[test]
fn tomcat_servlet_container() {
    let port = free_port();
    let base = scratch("tomcat");
    fs::create_dir_all(base.join("conf")).expect("conf");
    for entry in fs::read_dir("/etc/tomcat10").expect("tomcat10 is installed") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let name = path.file_name().expect("name");
            fs::copy(&path, base.join("conf").join(name)).expect("copy tomcat's conf");
        }
    }
    let server = fs::read_to_string(base.join("conf/server.xml")).expect("server.xml");
    fs::write(
        base.join("conf/server.xml"),
        server.replace(
            "port=\"8080\"",
            &format!("port=\"{port}\" address=\"127.0.0.1\""),
        ),
    )
    .expect("write server.xml");
    for sub in ["logs", "temp", "work", "webapps"] {
        fs::create_dir_all(base.join(sub)).expect("tomcat directory");
    }
    std::os::unix::fs::symlink(fixtures().join("tomcat"), base.join("webapps/ROOT")).expect("link");
    let _server = served(
        &format!(
            "CATALINA_HOME=/usr/share/tomcat10 CATALINA_BASE={} \
             /usr/share/tomcat10/bin/catalina.sh run > {}/out.log 2>&1",
            base.display(),
            base.display()
        ),
        port,
    );
    let agent = watch(port, "tomcat", 1.0);
    let (expected, idle) = matrix::run(port, Features::ALL);
    matrix::check(&agent, "tomcat", &expected);
    drop(idle);
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn apache_httpd_static_files() {
    let port = free_port();
    let dir = scratch("apache");
    let root = dir.join("root");
    fs::create_dir_all(root.join("items")).expect("document root");
    for id in 1..=9 {
        fs::write(root.join(format!("items/{id}")), format!("{{\"id\":{id}}}")).expect("item");
    }
    fs::write(root.join("large"), vec![b'x'; 250_000]).expect("large");
    let modules = "/usr/lib/apache2/modules";
    let d = dir.display();
    fs::write(
        dir.join("httpd.conf"),
        format!(
            "LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
             LoadModule authz_core_module {modules}/mod_authz_core.so\n\
             LoadModule mime_module {modules}/mod_mime.so\n\
             ServerName localhost\nListen 127.0.0.1:{port}\nPidFile {d}/httpd.pid\n\
             ErrorLog {d}/error.log\nUser www-data\nGroup www-data\n\
             TypesConfig /etc/mime.types\nDocumentRoot {root}\n\
             <Directory {root}>\n  Require all granted\n</Directory>\n",
            root = root.display()
        ),
    )
    .expect("httpd.conf");
    // -X: one process, in the foreground.
    let _server = served(&format!("apache2 -X -f {d}/httpd.conf"), port);
    let agent = watch(port, "apache", 1.0);
    let (expected, idle) = matrix::run(port, Features::STATIC);
    matrix::check(&agent, "apache", &expected);
    drop(idle);
    let _ = fs::remove_dir_all(&dir);
}

/// php-fpm's directory: on drop, its master (named by `fpm.pid`) gets
/// SIGTERM and is waited for, then the directory goes.
struct FpmDir(PathBuf);

impl Drop for FpmDir {
    fn drop(&mut self) {
        let pid = fs::read_to_string(self.0.join("fpm.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            // SAFETY: plain syscalls on a pid the server wrote.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            for _ in 0..100 {
                // SAFETY: as above; signal 0 only checks that it exists.
                if unsafe { libc::kill(pid, 0) } != 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn php_fpm_behind_nginx() {
    let fpm_port = free_port();
    let dir = scratch("php-fpm");
    let d = dir.display();
    fs::write(
        dir.join("fpm.conf"),
        format!(
            "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\n\
             [www]\nlisten = 127.0.0.1:{fpm_port}\npm = static\npm.max_children = 2\n"
        ),
    )
    .expect("fpm.conf");
    // -F: in the foreground; -R: as root (the tests run as root). It
    // leaves the fixture's process group, so its pid file ends it.
    let _fpm = served(
        &format!("php-fpm8.2 -F -R -y {d}/fpm.conf 2>/dev/null"),
        fpm_port,
    );
    let _stop = FpmDir(dir.clone());
    let port = free_port();
    let _nginx = Nginx::start(
        port,
        &format!(
            "location / {{ include /etc/nginx/fastcgi_params; fastcgi_pass 127.0.0.1:{fpm_port}; \
             fastcgi_param SCRIPT_FILENAME {}/index.php; }}",
            fixtures().display()
        ),
    );
    // nginx serves HTTP (its master and two workers); php-fpm speaks
    // FastCGI behind it.
    let agent = watch(port, "nginx-fpm", 3.0);
    let (expected, idle) = matrix::run(port, Features::NO_STREAM);
    matrix::check(&agent, "nginx-fpm", &expected);
    drop(idle);
}

/// The FastAPI app of the matrix under uvicorn, unwatched (an upstream or a
/// client's server), on a free port.
fn fastapi_app() -> (u16, loupe_tests::Fixture) {
    let port = free_port();
    let app = served(
        &format!(
            "python3 -m uvicorn asgi_app:app --app-dir {} --host 127.0.0.1 --port {port} \
             --no-access-log",
            fixtures().display()
        ),
        port,
    );
    (port, app)
}

#[test]
fn nginx_as_a_reverse_proxy_counts_both_sides() {
    let (upstream, _app) = fastapi_app();
    let port = free_port();
    let _nginx = Nginx::start(
        port,
        &format!(
            "location / {{ proxy_pass http://127.0.0.1:{upstream}; proxy_http_version 1.1; \
             proxy_set_header Connection \"\"; proxy_buffering off; }}"
        ),
    );
    let agent = watch(port, "nginx-proxy", 3.0);
    let (expected, idle) = matrix::run(port, Features::ALL);
    matrix::check(&agent, "nginx-proxy", &expected);
    // Every request also went upstream: nginx's own calls.
    let calls = matrix::by_method_and_status(&expected);
    matrix::check_calls(
        &agent,
        "nginx-proxy",
        &format!("127.0.0.1:{upstream}"),
        &calls,
    );
    drop(idle);
}

/// The calls `clients.py` (and its Node and Go twins) make on `go`.
fn client_plan() -> std::collections::BTreeMap<(String, u16), u64> {
    [
        (("GET", 200), 6),
        (("GET", 404), 2),
        (("POST", 201), 3),
        (("DELETE", 204), 1),
    ]
    .into_iter()
    .map(|((method, status), n)| ((method.to_owned(), status), n))
    .collect()
}

/// A client (`command`, with `{port}` and `{dir}` filled in) calling the
/// FastAPI app: every call counted by method and status.
fn client(service: &str, command: &str) {
    let (port, _app) = fastapi_app();
    let command = command
        .replace("{port}", &port.to_string())
        .replace("{dir}", &fixtures().display().to_string());
    let mut client = loupe_tests::Fixture::start("bash", &["-c", &format!("exec {command}")]);
    let agent = Agent::start(&["--pid", &client.pid().to_string(), "--service", service]);
    agent.wait_for(&targets(service), 1.0);
    client.command("go", "done");
    matrix::check_calls(
        &agent,
        service,
        &format!("127.0.0.1:{port}"),
        &client_plan(),
    );
}

#[test]
fn python_requests_client() {
    client("py-requests", "python3 {dir}/clients.py requests {port}");
}

#[test]
fn python_httpx_client() {
    client("py-httpx", "python3 {dir}/clients.py httpx {port}");
}

#[test]
fn python_httpx_async_client() {
    client(
        "py-httpx-async",
        "python3 {dir}/clients.py httpx-async {port}",
    );
}

#[test]
fn python_aiohttp_client() {
    client("py-aiohttp", "python3 {dir}/clients.py aiohttp {port}");
}

#[test]
fn node_fetch_client() {
    client("node-fetch", "node {dir}/client_fetch.js {port}");
}

#[test]
fn go_http_client() {
    let binary = go_build("client.go", "matrix-go-client");
    client("go-client", &format!("{} {{port}}", binary.display()));
}
