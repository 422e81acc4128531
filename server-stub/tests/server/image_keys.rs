//! The image key allow-list: a certificate whose laptop got an OS image signed by a key that is not
//! allowed for its site is flagged on the review pages and in the CSV, and allowing the key clears it.

use lapterop_certificate::keys;

use crate::fixtures;
use crate::helpers::*;

/// Logs `user` in through the real form; returns the session cookie's value.
fn login(s: &Server, user: &str, password: &str) -> String {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let page = agent.get(&format!("{}/login", s.url)).call().unwrap();
    let cookie = page.header("Set-Cookie").unwrap().to_owned();
    let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let r = agent
        .post(&format!("{}/login", s.url))
        .set("Cookie", &format!("lapterop_login={token}"))
        .send_form(&[("user", user), ("password", password), ("csrf", &token)])
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = r.all("Set-Cookie");
    let session = set.iter().find(|c| c.starts_with("lapterop_session=")).unwrap();
    session.split(';').next().unwrap().split_once('=').unwrap().1.to_owned()
}

fn page(s: &Server, session: &str, path: &str) -> String {
    let (code, body) = get_with(
        &format!("{}{path}", s.url),
        "Cookie",
        &format!("lapterop_session={session}"),
    )
    .unwrap();
    assert_eq!(code, 200, "{path}: {body}");
    body
}

fn image_keys(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["image-keys", args[0], "--data", dir.to_str().unwrap()];
    all.extend_from_slice(&args[1..]);
    cli(&all, "")
}

#[test]
fn an_image_signed_by_a_key_not_allowed_for_the_site_is_flagged_until_the_key_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let station = enrol(dir.path(), "bench-1", "image keys station");
    add_user(dir.path(), "lead", "correct horse battery");
    let ours = keys::fixture_key("the workshop's image key");
    let theirs = keys::fixture_key("an image key from somewhere else");
    let (_, ours_pub) = keys::write_keypair(&dir.path().join("ours"), &ours).unwrap();
    let (_, theirs_pub) = keys::write_keypair(&dir.path().join("theirs"), &theirs).unwrap();
    let (ours_id, theirs_id) = (
        keys::key_id(&ours.verifying_key()),
        keys::key_id(&theirs.verifying_key()),
    );
    let site = fixtures::laptop(0, "x").station.site;

    let (code, out, _) = image_keys(dir.path(), &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains("no image key is allowed yet"), "{out}");
    let (code, out, err) = image_keys(
        dir.path(),
        &[
            "add",
            "--site",
            &site,
            "--key",
            ours_pub.to_str().unwrap(),
            "--name",
            "standard 2026",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&ours_id), "{out}");
    // A file that is not a public key is refused with the reason.
    std::fs::write(dir.path().join("junk.pub"), "junk\n").unwrap();
    let (code, _, err) = image_keys(
        dir.path(),
        &[
            "add",
            "--site",
            &site,
            "--key",
            dir.path().join("junk.pub").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");

    let s = Server::start(dir.path());
    let with_image = |n: u64, signer: &str| {
        let mut c = fixtures::laptop(n, "Jana");
        let mut install = lapterop_certificate::sample::erased_laptop(String::new())
            .install
            .unwrap();
        install.signer_key_id = Some(signer.to_owned());
        c.install = Some(install);
        c
    };
    let mut ids = Vec::new();
    for c in [
        with_image(1, &ours_id),
        with_image(2, &theirs_id),
        fixtures::laptop(3, "Jana"),
    ] {
        ids.push(c.id.clone());
        let (code, body) = s.post(&fixtures::signed(c, &station));
        assert_eq!(code, 201, "{body}");
    }
    let session = login(&s, "lead", "correct horse battery");

    let allowed = page(&s, &session, &format!("/review/certificates/{}?lang=en", ids[0]));
    assert!(
        allowed.contains(&format!("signed by image key {ours_id}, allowed for this site")),
        "{allowed}"
    );
    let flagged = page(&s, &session, &format!("/review/certificates/{}?lang=en", ids[1]));
    assert!(
        flagged.contains(&format!(
            "NOT allowed: the installed image was signed by key {theirs_id}"
        )),
        "{flagged}"
    );
    let none = page(&s, &session, &format!("/review/certificates/{}?lang=en", ids[2]));
    assert!(!none.contains("id=\"image-check\""), "no install, no image line");

    // The queue marks the flagged one and can show only those; the CSV says it too.
    let queue = page(&s, &session, "/review?status=all");
    assert_eq!(queue.matches("image-unlisted").count(), 1, "{queue}");
    let only = page(&s, &session, "/review?status=all&image=unlisted");
    assert!(
        only.contains(&ids[1]) && !only.contains(&ids[0]) && !only.contains(&ids[2]),
        "{only}"
    );
    let csv = page(&s, &session, "/review/export.csv?image=unlisted");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].ends_with("image_signer,image_key_allowed"), "{}", lines[0]);
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with(&ids[1]) && lines[1].ends_with(&format!("{theirs_id},no")),
        "{csv}"
    );

    // The lead finds out the other key is the new image of a sister workshop and allows it for every
    // site: the flag goes, for what came before as well. Taking it off brings it back.
    let (code, out, err) = image_keys(
        dir.path(),
        &["add", "--site", "*", "--key", theirs_pub.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("every site"), "{out}");
    assert_eq!(
        page(&s, &session, "/review?status=all")
            .matches("image-unlisted")
            .count(),
        0
    );
    let (code, out, err) = image_keys(dir.path(), &["remove", "--site", "*", &theirs_id]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        page(&s, &session, "/review?status=all")
            .matches("image-unlisted")
            .count(),
        1
    );
    let (code, _, err) = image_keys(dir.path(), &["remove", "--site", "*", &theirs_id]);
    assert!(code == 2 && err.contains("is not allowed for"), "{err}");
    let (_, out, _) = image_keys(dir.path(), &["list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(list[0]["key_id"], ours_id.as_str());
}
