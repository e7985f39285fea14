// The REST API of docs/api.md: a bearer token kept in sessionStorage, JSON in and out,
// errors as ApiError {status, code, message, field}. A 401 clears the token and calls the
// handler set by setUnauthorizedHandler (the app shows the login screen).

const TOKEN_KEY = "mqhook.token";
const USER_KEY = "mqhook.user";
const BASE = "/api/v1";

let onUnauthorized = () => {};

export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, body) {
    const message = (body && typeof body.message === "string" && body.message) || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.code = (body && body.code) || null;
    this.field = (body && typeof body.field === "string" && body.field) || null;
  }
}

export function token() {
  const raw = sessionStorage.getItem(TOKEN_KEY);
  if (!raw) return null;
  try {
    const t = JSON.parse(raw);
    if (t.expires_at && t.expires_at * 1000 <= Date.now()) {
      clearToken();
      return null;
    }
    return t.token;
  } catch {
    clearToken();
    return null;
  }
}

export function userName() {
  return sessionStorage.getItem(USER_KEY) || "";
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
}

export async function login(username, password) {
  const body = await request("POST", "/login", { username, password }, { auth: false });
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ token: body.token, expires_at: body.expires_at }));
  sessionStorage.setItem(USER_KEY, body.username || username);
  return body;
}

export async function logout() {
  try {
    await request("POST", "/logout", undefined, { quiet401: true });
  } finally {
    clearToken();
  }
}

// One request. `path` is below /api/v1. Resolves to the decoded JSON body (null when empty).
export async function request(method, path, body, { auth = true, signal, quiet401 = false } = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, signal, cache: "no-store" };
  if (auth) {
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
  }
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(BASE + path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, { code: "NETWORK", message: "The broker did not answer (" + (err && err.message ? err.message : "network error") + ")" });
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text.slice(0, 300) };
    }
  }
  if (res.status === 401 && auth) {
    clearToken();
    if (!quiet401) onUnauthorized();
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const get = (path, opts) => request("GET", path, undefined, opts);
export const post = (path, body, opts) => request("POST", path, body, opts);
export const put = (path, body, opts) => request("PUT", path, body, opts);
export const del = (path, opts) => request("DELETE", path, undefined, opts);

// A path segment: webhook names and client ids go through encodeURIComponent.
export const seg = (s) => encodeURIComponent(s);
