// Calls mailconfirm through Backendless's own JavaScript SDK and prints the outcome as JSON:
//   node backendless.mjs <base-url> resend|create-url <identity> [user-token]
// {"ok": true, "value": ...} or {"ok": false, "message", "code", "status"} from the SDK's error.
import Backendless from 'backendless';

const [baseUrl, call, identity, userToken] = process.argv.slice(2);
Backendless.initApp(baseUrl);
if (userToken) {
  // As after Backendless.UserService.login(): the SDK sends the token in `user-token`.
  Backendless.UserService.setCurrentUser({ objectId: 'backend-service', 'user-token': userToken });
}

const calls = {
  'resend': () => Backendless.UserService.resendEmailConfirmation(identity),
  'create-url': () => Backendless.UserService.createEmailConfirmationURL(identity),
};

let outcome;
try {
  outcome = { ok: true, value: await calls[call]() };
} catch (error) {
  outcome = { ok: false, message: error.message, code: error.code, status: error.status };
}
console.log(JSON.stringify(outcome));
