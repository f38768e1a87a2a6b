//! The confirm page in a real browser (Debian's chromium, driven by playwright-core, with
//! JavaScript off, on a phone-sized screen): sign up, read the mail, open the link, confirm,
//! open it again, and get a new link for an expired one; then axe-core audits every page in
//! every language, light and dark. Screenshots of every page land in
//! `tests/artifacts/confirm-page/screenshots/`.

use std::path::Path;
use std::process::Command;

use mailconfirm::clients::{Accent, Brand, Support};
use mailconfirm::confirm_page::outcome::{MaskedAddress, Page};
use mailconfirm::confirm_page::render::{PAGE_LOCALES, PageForm, PageRenderer, PageView};
use mailconfirm::domain::EmailAddress;
use mailconfirm_local::harness::TestStack;
use mailconfirm_local::template::project_root;
use serde_json::{Value, json};

const TWO_DAYS: i64 = 2 * 24 * 3600;

/// Every page in every language, as the function renders it, for the browser to screenshot.
fn write_page_matrix(dir: &Path) {
    let renderer = PageRenderer::default();
    // The app's brand as a deployment sets it: colour, help and footer on every page.
    let brand = Brand {
        accent: Some(Accent::parse("#0f766e").unwrap()),
        support: Some(Support::parse("help@example.com").unwrap()),
        footer: Some("Example Ltd · 1 Main Street · Springfield".to_owned()),
        ..Brand::named("mailconfirm local")
    };
    let address = MaskedAddress::of(&EmailAddress::parse("ada@example.com").unwrap());
    for locale in PAGE_LOCALES {
        std::fs::create_dir_all(dir.join(locale)).unwrap();
        for page in Page::ALL {
            let form =
                page.button().map(|action| PageForm { action: action.as_str(), token: "token", redirect_to: None });
            let continue_to = page.is_success().then_some("https://app.example.com/");
            let typed_address = (page == Page::WrongCode).then_some("ada@example.com");
            let view =
                PageView { page, locale, brand: &brand, form, continue_to, address: Some(&address), typed_address };
            let html = renderer.render(view).unwrap();
            std::fs::write(dir.join(locale).join(format!("{}.html", page.key())), html).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_confirms_in_a_real_browser_and_every_page_is_shown() {
    let clients = project_root().join("tests/clients");
    assert!(
        clients.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "run scripts/test, which installs playwright-core (npm) and chromium (Debian)"
    );
    let artifacts = project_root().join("tests/artifacts/confirm-page");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();

    // The stack the person uses: a 1 s cooldown, and one new-link request per client.
    let stack = TestStack::start_with(|env| {
        env.insert("COOLDOWN_SECONDS".into(), "1".into());
        env.insert("RESEND_IP_LIMIT".into(), "1".into());
    })
    .await;
    let now = mailconfirm::domain::UnixTime::now().0;
    let user = json!({ "user_id": "browser-ada", "email": stack.unique_email("ada") });
    let expired_email = stack.unique_email("late");
    let expired_token = stack.link_token_issued_at("browser-late", &expired_email, "en", now - TWO_DAYS);
    let french = json!({ "user_id": "browser-fr", "email": stack.unique_email("camille") });
    let coder = json!({ "user_id": "browser-coder", "email": stack.unique_email("kenji") });
    let guessed = json!({ "user_id": "browser-guessed", "email": stack.unique_email("guessed") });

    // A link to an address the account has since changed (Mastodon's email parameter).
    let old_link = stack.user_whose_address_changed("browser-mover").await;

    let disabled = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let (quiet_id, quiet_email) = disabled.signed_up_user(None).await;
    let disabled_token = disabled.link_token_issued_at(&quiet_id, &quiet_email, "en", now);
    let storage_down = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), "no-such-table".into());
    })
    .await;
    let down_token = storage_down.link_token_issued_at("browser-down", &stack.unique_email("down"), "en", now);

    let matrix = artifacts.join("pages");
    write_page_matrix(&matrix);
    let scenario = json!({
        "base": stack.base_url,
        "artifacts": artifacts,
        "user": user,
        "expired": { "user_id": "browser-late", "email": expired_email, "token": expired_token },
        "french": french,
        "coder": coder,
        "guessed": guessed,
        "address_changed_url": stack.url(&format!("/confirm-email?token={old_link}")),
        "mail_disabled_url": disabled.url(&format!("/confirm-email?token={disabled_token}")),
        "storage_down_url": storage_down.url(&format!("/confirm-email?token={down_token}")),
        "matrix_dir": matrix,
    });
    let scenario_file = artifacts.join("scenario.json");
    std::fs::write(&scenario_file, scenario.to_string()).unwrap();

    // The stacks serve on this runtime's threads while node drives the browser.
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node").current_dir(&clients).arg("confirm_page_browser.mjs").arg(&scenario_file).output()
    })
    .await
    .unwrap()
    .expect("node runs");
    assert!(output.status.success(), "the browser walk-through failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_slice(&output.stdout).expect("the script prints JSON");
    let pages = seen["seen"].as_array().unwrap();
    assert_eq!(pages.len(), 20 + PAGE_LOCALES.len() * Page::ALL.len(), "{seen}");
    let audited = seen["audited"].as_array().unwrap();
    assert_eq!(audited.len(), 2 * PAGE_LOCALES.len() * Page::ALL.len(), "axe, light and dark: {seen}");

    // What the browser did, as the table holds it.
    assert_eq!(stack.stored_status("browser-ada").await.as_deref(), Some("ENABLED"));
    assert_eq!(stack.stored_status("browser-fr").await.as_deref(), Some("ENABLED"));
    assert_eq!(stack.stored_status("browser-coder").await.as_deref(), Some("ENABLED"), "by the code form");
    assert_eq!(stack.stored_status("browser-guessed").await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    assert_eq!(stack.stored_status("browser-late").await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    assert_eq!(stack.mails_to(&expired_email).await.len(), 2, "the sign-up mail and the new link");
    assert_eq!(stack.stored_status("browser-mover").await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    for name in ["01-ask", "02-confirmed", "03-already-confirmed", "04-expired", "05-new-link-requested"] {
        assert!(artifacts.join(format!("screenshots/{name}.png")).is_file(), "{name}");
    }
}
