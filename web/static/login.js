// Log in: a token from the API, kept in this tab; then the page for the account's role.
import { ApiError, api, notify, session } from "./common.js";

const home = { agent: "/agent", supervisor: "/wallboard", admin: "/wallboard" };

const current = session.get();
if (current && home[current.account.role]) location.replace(home[current.account.role]);

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const button = document.getElementById("submit");
  button.disabled = true;
  notify("");
  try {
    const answer = await api("POST", "/api/v1/session", {
      username: form.username.value.trim(),
      password: form.password.value,
    });
    session.save({ token: answer.token, account: answer.account, expires_at: answer.expires_at });
    location.replace(home[answer.account.role] || "/");
  } catch (error) {
    notify(error instanceof ApiError ? error.message : String(error), "error");
  } finally {
    button.disabled = false;
  }
});
