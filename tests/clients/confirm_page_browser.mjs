// The confirm page in a real browser: Debian's chromium, driven by playwright-core, with
// JavaScript switched off, on a phone-sized screen. Run by tests/tests/confirm_page_browser.rs,
// which starts the local stacks and writes the scenario (argv[2]); this script walks through
// it as a person would, saves a screenshot of every page, and prints what it saw as JSON.
// Any unexpected page ends it with an error.

import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const axeScript = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

const scenario = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { base, artifacts } = scenario;
const shots = join(artifacts, 'screenshots');
mkdirSync(join(shots, 'matrix'), { recursive: true });
mkdirSync(join(shots, 'matrix-dark'), { recursive: true });
const seen = [];
const audited = [];

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function api(path, options = {}) {
  const response = await fetch(base + path, options);
  const body = await response.text();
  return { status: response.status, json: body ? JSON.parse(body) : null };
}

async function signUp(event) {
  const { status, json } = await api('/_local/signup', { method: 'POST', body: JSON.stringify(event) });
  check(status === 200 && json.batchItemFailures.length === 0, `sign-up failed: ${status} ${JSON.stringify(json)}`);
}

async function mailsTo(email, atLeast) {
  for (let attempt = 0; attempt < 50; attempt++) {
    const { json } = await api(`/_local/inbox.json?to=${encodeURIComponent(email)}`);
    if (json.messages.length >= atLeast) return json.messages;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`fewer than ${atLeast} mails reached ${email}`);
}

async function userStatus(userId) {
  const { status, json } = await api(`/_local/users/${encodeURIComponent(userId)}`);
  check(status === 200, `no user ${userId}: ${status}`);
  return json.userStatus;
}

// The page on screen: which outcome, in which language, with which title; and a screenshot.
async function look(page, name, expected) {
  const outcome = await page.locator('main').getAttribute('data-page');
  const lang = await page.locator('html').getAttribute('lang');
  const title = (await page.locator('h1').textContent()).trim();
  const box = await page.locator('main').boundingBox();
  const width = page.viewportSize().width;
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  seen.push({ name, outcome, lang, title });
  check(outcome === expected.outcome, `${name}: expected the ${expected.outcome} page, saw ${outcome} (${title})`);
  check(lang === (expected.lang ?? 'en'), `${name}: lang is ${lang}`);
  check(box.x >= 0 && box.x + box.width <= width, `${name}: the page is wider than the screen`);
  return { title };
}

// The address the page is about, masked: its first character, three bullets, its domain.
async function checkAddress(page, name, email) {
  const [local, domain] = email.split('@');
  const shown = (await page.locator('#page-address strong').textContent()).trim();
  check(shown === `${local[0]}\u2022\u2022\u2022@${domain}`, `${name}: the address shows as ${shown}`);
  check(!(await page.content()).includes(email), `${name}: the page shows the whole address`);
}

// Pressing the page's button, as a person would: by keyboard, which also proves it is focusable.
async function pressButton(page, name) {
  const button = page.locator('form button[type="submit"]');
  check((await button.count()) === 1, `${name}: no button to press`);
  await button.focus();
  check((await page.locator('button:focus').count()) === 1, `${name}: the button takes no focus`);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  // As this machine needs them: no sandbox as root, no background traffic to a closed network.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const phone = (locale) => browser.newContext({
  viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, javaScriptEnabled: false, locale,
});

try {
  const context = await phone('en-US');
  const page = await context.newPage();

  // 1. A sign-up, and its mail in the local inbox.
  const { user_id: userId, email } = scenario.user;
  await signUp({ user_id: userId, email });
  const [mail] = await mailsTo(email, 1);
  check(mail.link && mail.link.includes('/confirm-email?token='), 'the mail has no confirmation link');
  const desktop = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  await desktop.goto(`${base}/_local/inbox?to=${encodeURIComponent(email)}`);
  await desktop.screenshot({ path: join(shots, '00-inbox.png'), fullPage: true });

  // 2. Opening the link asks; the user is still pending.
  let response = await page.goto(mail.link);
  check(response.status() === 200, `opening the link answered ${response.status()}`);
  check(response.headers()['referrer-policy'] === 'no-referrer', 'no Referrer-Policy');
  check(response.headers()['content-security-policy'].includes("frame-ancestors 'none'"), 'no CSP');
  await look(page, '01-ask', { outcome: 'ask' });
  await checkAddress(page, '01-ask', email);
  check((await userStatus(userId)) === 'EMAIL_CONFIRMATION_PENDING', 'opening the link confirmed the user');
  await desktop.goto(mail.link);
  await desktop.screenshot({ path: join(shots, '01-ask-desktop.png') });

  // 3. Confirm: the success page, and the user is enabled.
  await pressButton(page, '01-ask');
  await look(page, '02-confirmed', { outcome: 'confirmed' });
  await checkAddress(page, '02-confirmed', email);
  check((await userStatus(userId)) === 'ENABLED', 'the user is not ENABLED after Confirm');

  // 3b. The same page under a dark system scheme: other colours, through the same hashed style.
  const background = () => page.locator('main').evaluate((main) => getComputedStyle(main).backgroundColor);
  const light = await background();
  await page.emulateMedia({ colorScheme: 'dark' });
  const dark = await background();
  await page.screenshot({ path: join(shots, '02-confirmed-dark.png'), fullPage: true });
  seen.push({ name: '02-confirmed-dark', outcome: 'confirmed', light, dark });
  check(light !== dark, `the page looks the same in the dark scheme (${light})`);
  await page.emulateMedia({ colorScheme: 'light' });

  // 4. The link again: already confirmed, shown as a success.
  await page.goto(mail.link);
  await look(page, '03-already-confirmed', { outcome: 'already_confirmed' });

  // 5. An expired link: one click sends a new link, which arrives and works.
  const expired = scenario.expired;
  await signUp({ user_id: expired.user_id, email: expired.email });
  await new Promise((resolve) => setTimeout(resolve, 1200)); // past the sign-up mail's 1 s cooldown
  response = await page.goto(`${base}/confirm-email?token=${expired.token}`);
  check(response.status() === 410, `an expired link answered ${response.status()}`);
  await look(page, '04-expired', { outcome: 'expired' });
  await pressButton(page, '04-expired');
  await look(page, '05-new-link-requested', { outcome: 'new_link_requested' });
  const resent = await mailsTo(expired.email, 2);
  await page.goto(resent[resent.length - 1].link);
  await look(page, '05b-new-link-opened', { outcome: 'ask' });

  // 6. Asking again at once is over the throttle.
  await page.goto(`${base}/confirm-email?token=${expired.token}`);
  await pressButton(page, '04-expired-again');
  await look(page, '06-too-many-requests', { outcome: 'too_many_requests' });
  const wait = (await page.locator('#page-text').textContent()).trim();
  check(/^You can ask for a new link again in \d+ (second|seconds|minute|minutes|hour|hours)\./.test(wait),
    `06-too-many-requests: no time to ask again in "${wait}"`);
  check(wait.includes('the last link we sent you still works'), `06-too-many-requests: "${wait}"`);

  // 7. A damaged link, a link to an address the account no longer has, mail switched off.
  await page.goto(`${base}/confirm-email?token=${mail.link.split('token=')[1].slice(0, -4)}`);
  await look(page, '07-invalid', { outcome: 'invalid' });
  await page.goto(scenario.address_changed_url);
  await look(page, '08-address-changed', { outcome: 'address_changed' });
  await page.goto(scenario.mail_disabled_url);
  await look(page, '09-mail-disabled', { outcome: 'mail_disabled' });

  // 8. Storage down: the page still asks; Confirm gives a retry button for the same link.
  await page.goto(scenario.storage_down_url);
  await look(page, '10-ask-storage-down', { outcome: 'ask' });
  await pressButton(page, '10-ask-storage-down');
  await look(page, '10-temporary-failure', { outcome: 'temporary_failure' });
  check((await page.locator('input[name="token"]').getAttribute('value')) === new URL(scenario.storage_down_url).searchParams.get('token'),
    'the retry button does not carry the same link');

  // 9. A French user reads a French page, confirms, and sees French.
  const french = await (await phone('fr-FR')).newPage();
  await signUp({ user_id: scenario.french.user_id, email: scenario.french.email, locale: 'fr' });
  const [frenchMail] = await mailsTo(scenario.french.email, 1);
  await french.goto(frenchMail.link);
  await look(french, '11-ask-fr', { outcome: 'ask', lang: 'fr' });
  await pressButton(french, '11-ask-fr');
  const { title } = await look(french, '12-confirmed-fr', { outcome: 'confirmed', lang: 'fr' });
  check(title === 'Votre adresse e-mail est confirmée', `French title: ${title}`);
  // Post/redirect/get: the result is a page of its own, which Reload shows again without posting.
  check(new URL(french.url()).searchParams.get('done') === 'confirmed', `after Confirm the URL is ${french.url()}`);
  await french.reload();
  await look(french, '12b-confirmed-fr-reloaded', { outcome: 'confirmed', lang: 'fr' });

  // 9b. The mail read on another device: the address and the mail's code, typed on the form.
  const coder = scenario.coder;
  await signUp({ user_id: coder.user_id, email: coder.email });
  const [codeMail] = await mailsTo(coder.email, 1);
  check(/^[0-9]{6}$/.test(codeMail.code ?? ''), `the mail carries a six-digit code: ${codeMail.code}`);
  const wrongCode = codeMail.code === '000000' ? '111111' : '000000';
  const typeCode = async (name, code, outcome) => {
    await page.fill('#code-email', coder.email);
    await page.fill('#code-code', code);
    await Promise.all([page.waitForNavigation(), page.press('#code-code', 'Enter')]);
    return look(page, name, { outcome });
  };
  await page.goto(`${base}/confirm-email/code`);
  await look(page, '13-enter-code', { outcome: 'enter_code' });
  check((await page.getAttribute('#code-code', 'autocomplete')) === 'one-time-code', 'the code field offers the mail\'s code');
  await typeCode('14-wrong-code', wrongCode, 'wrong_code');
  check((await page.inputValue('#code-email')) === coder.email, 'the typed address is kept after a wrong code');
  await typeCode('15-code-confirmed', codeMail.code, 'confirmed');
  check((await userStatus(coder.user_id)) === 'ENABLED', 'the right code did not confirm');

  // 9c. Five wrong codes use the code up: even the right one then asks for a new mail.
  const guessed = scenario.guessed;
  await signUp({ user_id: guessed.user_id, email: guessed.email });
  const [guessedMail] = await mailsTo(guessed.email, 1);
  const otherCode = guessedMail.code === '000000' ? '111111' : '000000';
  await page.goto(`${base}/confirm-email/code`);
  for (let attempt = 0; attempt < 5; attempt++) {
    await page.fill('#code-email', guessed.email);
    await page.fill('#code-code', otherCode);
    await Promise.all([page.waitForNavigation(), page.press('#code-code', 'Enter')]);
  }
  await page.fill('#code-email', guessed.email);
  await page.fill('#code-code', guessedMail.code);
  await Promise.all([page.waitForNavigation(), page.press('#code-code', 'Enter')]);
  await look(page, '16-code-used-up', { outcome: 'code_used_up' });
  check((await userStatus(guessed.user_id)) === 'EMAIL_CONFIRMATION_PENDING', 'a used-up code confirmed');

  // 10. Every page in every language, as rendered by the function, on the phone screen.
  for (const locale of readdirSync(scenario.matrix_dir)) {
    for (const file of readdirSync(join(scenario.matrix_dir, locale))) {
      await page.goto(`file://${join(scenario.matrix_dir, locale, file)}`);
      await look(page, `matrix/${locale}-${file.replace('.html', '')}`, { outcome: file.replace('.html', ''), lang: locale });
    }
  }

  // 11. axe-core (WCAG 2.1 A and AA, colour contrast included) on every page in every language,
  // in the light and the dark scheme. axe is a script, so this context runs JavaScript; the
  // pages are the same files as above, without the page's CSP header.
  const auditor = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
  for (const colorScheme of ['light', 'dark']) {
    await auditor.emulateMedia({ colorScheme });
    for (const locale of readdirSync(scenario.matrix_dir)) {
      for (const file of readdirSync(join(scenario.matrix_dir, locale))) {
        await auditor.goto(`file://${join(scenario.matrix_dir, locale, file)}`);
        await auditor.addScriptTag({ path: axeScript });
        const violations = await auditor.evaluate(async () => {
          const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
          const result = await window.axe.run(document, { runOnly: { type: 'tag', values: tags } });
          return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
        });
        const name = `${colorScheme}/${locale}-${file.replace('.html', '')}`;
        check(violations.length === 0, `axe, ${name}: ${violations.join('; ')}`);
        // Each page kind in the dark scheme too, in a Latin and a CJK script, to look at.
        if (colorScheme === 'dark' && (locale === 'en' || locale === 'ja')) {
          await auditor.screenshot({ path: join(shots, 'matrix-dark', `${locale}-${file.replace('.html', '')}.png`), fullPage: true });
        }
        audited.push(name);
      }
    }
  }
} finally {
  await browser.close();
}

console.log(JSON.stringify({ seen, audited }));
