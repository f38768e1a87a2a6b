// Calls mailconfirm through Backendless's own JavaScript SDK and prints the outcome as JSON:
//   node backendless.mjs <base-url> resend|create-url|app-info <identity> [user-token]
// {"ok": true, "value": ...} or {"ok": false, "message", "code", "status"} from the SDK's error.
// `app-info` reloads the app information as `initApp` loads it, with the user-token set if one
// is given (a stale one from an earlier session, say), and reports every request the SDK made
// for it, whether its promise settled, and the token the SDK holds afterwards.
import Backendless from 'backendless';

const [baseUrl, call, identity, userToken] = process.argv.slice(2);

// Every GET the SDK sends, with the user-token it sent and what came back.
const requests = [];
const get = Backendless.request.get.bind(Backendless.request);
Backendless.request.get = (options) => {
  const sent = { url: options.url.replace(baseUrl, ''), userToken: Backendless.getCurrentUserToken() };
  const answer = get(options);
  requests.push(answer.then(
    (body) => ({ ...sent, status: 200, body }),
    (error) => ({ ...sent, status: error.status, code: error.code }),
  ));
  return answer;
};
const answered = async () => {
  for (let seen = -1; seen !== requests.length; ) {
    seen = requests.length;
    await Promise.all(requests);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return Promise.all(requests);
};

// Touching Logging first makes initApp load the logging levels from the app information too.
Backendless.Logging.getLogger('mailconfirm-test');
Backendless.initApp(baseUrl);
if (userToken) {
  // As after Backendless.UserService.login(): the SDK sends the token in `user-token`.
  Backendless.UserService.setCurrentUser({ objectId: 'backend-service', 'user-token': userToken });
}

const calls = {
  'resend': () => Backendless.UserService.resendEmailConfirmation(identity),
  'create-url': () => Backendless.UserService.createEmailConfirmationURL(identity),
  // initApp has asked without a token; with one, ask again as a start with a saved session does
  // (the SDK's own reload: the code initApp runs).
  'app-info': async () => {
    let settled = false;
    Backendless.appInfoPromise(Boolean(userToken)).then(() => { settled = true; }, () => { settled = true; });
    const made = await answered();
    return { requests: made, settled, userTokenAfter: Backendless.getCurrentUserToken() };
  },
};

let outcome;
try {
  outcome = { ok: true, value: await calls[call]() };
} catch (error) {
  outcome = { ok: false, message: error.message, code: error.code, status: error.status };
}
console.log(JSON.stringify(outcome));
