//! The status page over plain HTTP against the real daemon: login with the
//! API key, CSRF on state-changing requests, clip files by id only, secrets
//! kept out of the page. (The browser suite is tests/web_browser.rs.)

mod common;

use common::web::{CLIP_ID, daemon_with_a_clip, request};

const KEY: &str = "web-test-key-0123";

fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field in the page") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

#[test]
fn the_page_takes_the_api_key_and_refuses_what_it_must() {
    let tmp = tempfile::tempdir().unwrap();
    let b = daemon_with_a_clip(tmp.path(), Some(KEY));
    let port = b.daemon.api_port;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];

    // Without a session: to the login form; files are refused too.
    let r = request(port, "GET", "/", &[], "");
    assert_eq!((r.code, r.header("location")), (303, Some("/login")), "{}", r.text());
    let r = request(port, "GET", &format!("/clips/{CLIP_ID}/video.mp4"), &[], "");
    assert_eq!(r.code, 303, "no video without a session");
    let r = request(port, "GET", "/login", &[], "");
    assert_eq!(r.code, 200);
    assert!(r.text().contains("type=\"password\""), "{}", r.text());

    // A wrong key: no cookie.
    let r = request(port, "POST", "/login", &form, "key=not-the-key");
    assert_eq!(r.code, 401);
    assert!(r.header("set-cookie").is_none());
    assert!(r.text().contains("That is not the API key."));

    // The right key: an HttpOnly, SameSite=Strict session cookie.
    let r = request(port, "POST", "/login", &form, &format!("key={KEY}"));
    assert_eq!((r.code, r.header("location")), (303, Some("/")));
    let set = r.header("set-cookie").expect("a session cookie").to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = cookie_of(&set);
    let with = [("Cookie", cookie.as_str())];

    let cameras = request(port, "GET", "/", &with, "");
    assert_eq!(cameras.code, 200);
    let html = cameras.text();
    assert!(html.contains("porch") && html.contains("garage"), "{html}");
    assert!(cameras.header("content-security-policy").is_some_and(|c| c.contains("default-src 'self'")));

    // The clip page shows the analysis and the video; the video answers a Range request.
    let page = request(port, "GET", &format!("/clips/{CLIP_ID}"), &with, "").text();
    assert!(page.contains("Two people walk along the path and leave."), "{page}");
    // The parked cars are shown, and shown as no reason to alert; the people as moving.
    assert!(page.contains("stationary (no alert)") && page.contains("moving"), "{page}");
    assert!(page.contains(&format!("/clips/{CLIP_ID}/video.mp4")), "{page}");
    let r = request(port, "GET", &format!("/clips/{CLIP_ID}/video.mp4"), &[with[0], ("Range", "bytes=0-99")], "");
    assert_eq!(r.code, 206, "{:?}", r.headers);
    assert_eq!(r.body.len(), 100);
    assert!(r.header("content-range").is_some_and(|c| c.starts_with("bytes 0-99/")), "{:?}", r.headers);
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    let snap = request(port, "GET", &format!("/clips/{CLIP_ID}/snapshot.jpg"), &with, "");
    assert_eq!((snap.code, &snap.body[..2]), (200, &[0xff, 0xd8][..]), "a JPEG");
    let picture = request(port, "GET", "/cameras/porch/picture.jpg", &with, "");
    assert_eq!((picture.code, &picture.body[..2]), (200, &[0xff, 0xd8][..]), "the folder camera's last snapshot");

    // Path tricks: refused, never a file from outside the store's records.
    for path in [
        "/clips/..%2F..%2F..%2Fetc%2Fpasswd/video.mp4",
        "/clips/%2e%2e/snapshot.jpg",
        "/clips/..%2Fhomesec.yaml/video.mp4",
        "/clips/porch/video.mp4",
        "/clips/garage/snapshot.jpg",
        "/clips/%2Fetc%2Fpasswd/video.mp4",
        "/cameras/..%2F..%2Fetc%2Fpasswd/picture.jpg",
    ] {
        let r = request(port, "GET", path, &with, "");
        assert!([400, 404].contains(&r.code), "{path}: {} {}", r.code, r.text());
        assert!(!r.text().contains("root:"), "{path}");
    }

    // The System page: the config, with no secret in it.
    let system = request(port, "GET", "/system", &with, "").text();
    assert!(system.contains("WEB_API_KEY") && system.contains("@nas.local"), "{system}");
    for secret in ["s3cretpw", KEY, "sk-web-test"] {
        assert!(!system.contains(secret), "`{secret}` shows on the System page");
    }

    // State changes need the session's CSRF token.
    let csrf = csrf_in(&page);
    let reanalyze = format!("/clips/{CLIP_ID}/reanalyze");
    let post = [("Cookie", cookie.as_str()), form[0]];
    assert_eq!(request(port, "POST", &reanalyze, &post, "").code, 403, "no token");
    assert_eq!(request(port, "POST", &reanalyze, &post, "csrf=0123abcd").code, 403, "a wrong token");
    assert_eq!(request(port, "POST", &reanalyze, &form, &format!("csrf={csrf}")).code, 401, "no session");
    assert_eq!(request(port, "POST", "/logout", &post, "csrf=wrong").code, 403);
    let r = request(port, "POST", &reanalyze, &post, &format!("csrf={csrf}"));
    assert_eq!(r.code, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some(format!("/clips/{CLIP_ID}?notice=queued").as_str()));

    // Logout ends the session on the box, not only in the browser.
    let r = request(port, "POST", "/logout", &post, &format!("csrf={csrf}"));
    assert_eq!((r.code, r.header("location")), (303, Some("/login")));
    assert_eq!(request(port, "GET", "/system", &with, "").code, 303, "the old cookie no longer works");

    // Guessing: after 5 wrong keys even the right one waits.
    for _ in 0..5 {
        assert_eq!(request(port, "POST", "/login", &form, "key=guess").code, 401);
    }
    let r = request(port, "POST", "/login", &form, &format!("key={KEY}"));
    assert_eq!(r.code, 429, "{}", r.text());
    assert!(r.header("set-cookie").is_none());
}

#[test]
fn without_a_key_the_page_is_open_on_loopback_only() {
    let tmp = tempfile::tempdir().unwrap();
    let b = daemon_with_a_clip(tmp.path(), None);
    let port = b.daemon.api_port;
    let r = request(port, "GET", "/events", &[], "");
    assert_eq!(r.code, 200);
    assert!(r.text().contains(&format!("/clips/{CLIP_ID}/snapshot.jpg")), "{}", r.text());
    let set = r.header("set-cookie").expect("a session for CSRF").to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    // Even open, a state change needs the CSRF token of its session.
    let post = [("Cookie", set.split(';').next().unwrap()), ("Content-Type", "application/x-www-form-urlencoded")];
    assert_eq!(request(port, "POST", &format!("/clips/{CLIP_ID}/reanalyze"), &post, "csrf=nope").code, 403);
    // Filters: by risk and by camera.
    assert!(request(port, "GET", "/events?risk=medium", &[], "").text().contains(CLIP_ID));
    assert!(!request(port, "GET", "/events?risk=high", &[], "").text().contains(CLIP_ID));
    assert!(!request(port, "GET", "/events?camera=garage", &[], "").text().contains(CLIP_ID));
    assert_eq!(request(port, "GET", "/events?status=bogus", &[], "").code, 400);

    // From another address: refused, with a page that says what to configure.
    let ip = common::web::lan_address().expect("a network address besides loopback");
    let r = common::web::request_to(ip, port, "/events");
    assert_eq!(r.code, 403, "{}", r.text());
    assert!(r.text().contains("server.api_key_env"), "{}", r.text());
    assert!(!r.text().contains(CLIP_ID));
    assert_eq!(common::web::request_to(ip, port, &format!("/clips/{CLIP_ID}/video.mp4")).code, 403);
}
