/**
 * A corpus for the secret scanner: realistic fake credentials of every format it supports (at
 * least two each, in the shapes they take in compose files, env files, JSON state and logs), and
 * benign look-alikes that must not be findings (UUIDs, hashes, image digests, base64 config,
 * variable references, policy words under secret-like keys).
 *
 * Every value is made up: random characters in the format's alphabet from a fixed seed, so the
 * corpus is stable across runs and no real credential is in this repository.
 */

export interface SecretSample {
  /** the scanner rule expected to report it */
  rule: string;
  /** one line (or a few, for a PEM block) as it appears in a file */
  text: string;
  /** the secret part: it must not survive redaction */
  value: string;
}

export interface BenignSample {
  label: string;
  text: string;
}

/** mulberry32: a small seeded generator, so the fake values are the same on every run */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rand = seeded(0x5ec2e7);
const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HEX = "0123456789abcdef";
const B64 = `${ALNUM}+/`;
const URLSAFE = `${ALNUM}_-`;
const LOWER = "abcdefghijklmnopqrstuvwxyz";
const DIGITS = "0123456789";

function pick(alphabet: string, n: number): string {
  let out = "";
  for (let i = 0; i < n; i++) out += alphabet[Math.floor(rand() * alphabet.length)];
  return out;
}

/** Random in the alphabet, but with at least one digit and one upper-case letter when the alphabet has them (as real keys do). */
function key(alphabet: string, n: number): string {
  for (;;) {
    const v = pick(alphabet, n);
    if ((!/[0-9]/.test(alphabet) || /[0-9]/.test(v)) && (!/[A-Z]/.test(alphabet) || /[A-Z]/.test(v)))
      return v;
  }
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const b64url = (s: string) => Buffer.from(s).toString("base64url");

function jwt(claims: Record<string, unknown>): string {
  return `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}.${key(URLSAFE, 43)}`;
}

function pem(kind: string, lines: number, indent = ""): { text: string; body: string } {
  const body = Array.from({ length: lines }, () => key(B64, 64));
  return {
    text: [
      `${indent}-----BEGIN ${kind}-----`,
      ...body.map((l) => indent + l),
      `${indent}-----END ${kind}-----`,
    ].join("\n"),
    body: body[1]!,
  };
}

function sample(rule: string, value: string, text: (v: string) => string): SecretSample {
  return { rule, value, text: text(value) };
}

/**
 * A si deployment event whose free-text fields carry `message`, as si writes one line of
 * events/deployments.jsonl: the credential sits inside a JSON string value (quotes escaped).
 */
function event(field: "error_message" | "command_line" | "request", message: string): string {
  return JSON.stringify({
    timestamp: "2026-11-20T10:00:00.123456Z",
    context: "internal-dogfood",
    source: "si paas",
    command: "deploy",
    status: "failed",
    app: "web",
    release: "r-41",
    request_id: "7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c1e",
    [field]: message,
  });
}

const rsa = pem("RSA PRIVATE KEY", 6, "      ");
const openssh = pem("OPENSSH PRIVATE KEY", 5);
const ecJsonBody = key(B64, 64);

/** At least two realistic fake examples of every format the scanner supports. */
export const SECRET_SAMPLES: readonly SecretSample[] = [
  sample("aws-access-key-id", `AKIA${key(UPPER32, 16)}`, (v) => `      AWS_ACCESS_KEY_ID: ${v}`),
  sample("aws-access-key-id", `ASIA${key(UPPER32, 16)}`, (v) => `{"event":"sts","issued":"${v}"}`),
  sample("aws-secret-access-key", key(B64, 40), (v) => `aws_secret_access_key = ${v}`),
  sample(
    "aws-secret-access-key",
    key(B64, 40),
    (v) => `{"AccessKeyId":"AKIA-REDACTED","SecretAccessKey":"${v}"}`,
  ),
  sample(
    "gcp-api-key",
    `AIza${key(URLSAFE, 35)}`,
    (v) => `      maps_endpoint: https://maps.googleapis.com/maps/api/geocode/json?key=${v}`,
  ),
  sample("gcp-api-key", `AIza${key(URLSAFE, 35)}`, (v) => `      firebase: ${v}`),
  sample(
    "azure-storage-key",
    `${key(B64, 86)}==`,
    (v) =>
      `      STORAGE: DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey=${v};EndpointSuffix=core.windows.net`,
  ),
  sample(
    "azure-storage-key",
    `${key(B64, 43)}=`,
    (v) =>
      `      BUS: Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${v}`,
  ),
  sample(
    "azure-sas-token",
    `${key(ALNUM, 43)}%3D`,
    (v) =>
      `      backup_url: https://acme.blob.core.windows.net/dumps?sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2027-01-01T00:00:00Z&sig=${v}`,
  ),
  sample(
    "azure-sas-token",
    `${key(ALNUM, 43)}%3D`,
    (v) => `{"url":"https://acme.queue.core.windows.net/jobs?sv=2021-08-06&sp=a&sig=${v}"}`,
  ),
  sample("azure-ad-client-secret", `${key(ALNUM, 3)}8Q~${key(`${ALNUM}_~.-`, 34)}`, (v) => `      sso: ${v}`),
  sample(
    "azure-ad-client-secret",
    `${key(ALNUM, 3)}7Q~${key(`${ALNUM}_~.-`, 34)}`,
    (v) => `{"app":"portal","value":"${v}"}`,
  ),
  sample(
    "github-token",
    `ghp_${key(ALNUM, 36)}`,
    (v) =>
      `{"timestamp":"2026-11-20T10:00:00.123456Z","command":"deploy","status":"failed","error_message":"git clone https://${v}@github.com/acme/web.git: exit 128"}`,
  ),
  sample("github-token", `github_pat_${key(ALNUM, 22)}_${key(ALNUM, 59)}`, (v) => `      GH_CLONE: ${v}`),
  sample("github-token", `gho_${key(ALNUM, 36)}`, (v) => `      oauth: ${v}`),
  sample("gitlab-token", `glpat-${key(URLSAFE, 20)}`, (v) => `      registry_login: ${v}`),
  sample("gitlab-token", `glptt-${key(HEX, 40)}`, (v) => `{"trigger":"${v}"}`),
  sample("npm-token", `npm_${key(ALNUM, 36)}`, (v) => `      NPM_CONFIG: ${v}`),
  sample("npm-token", `npm_${key(ALNUM, 36)}`, (v) => `{"publish":"${v}"}`),
  sample(
    "npm-auth-token",
    `${key(HEX, 8)}-${key(HEX, 4)}-${key(HEX, 4)}-${key(HEX, 4)}-${key(HEX, 12)}`,
    (v) => `//registry.npmjs.org/:_authToken=${v}`,
  ),
  sample("npm-auth-token", b64(`deploy:${key(ALNUM, 16)}`), (v) => `//npm.acme.dev/:_auth=${v}`),
  sample("pypi-token", `pypi-AgEIcHlwaS5vcmc${key(URLSAFE, 70)}`, (v) => `      TWINE: ${v}`),
  sample("pypi-token", `pypi-AgEIcHlwaS5vcmc${key(URLSAFE, 64)}`, (v) => `password = ${v}`),
  sample(
    "slack-token",
    `xoxb-${pick(DIGITS, 12)}-${pick(DIGITS, 13)}-${key(ALNUM, 24)}`,
    (v) => `      notify: ${v}`,
  ),
  sample(
    "slack-token",
    `xoxp-${pick(DIGITS, 12)}-${pick(DIGITS, 12)}-${pick(DIGITS, 13)}-${key(HEX, 32)}`,
    (v) => `{"channel":"ops","via":"${v}"}`,
  ),
  sample(
    "slack-webhook-url",
    `T${key(UPPER32, 8)}/B${key(UPPER32, 10)}/${key(ALNUM, 24)}`,
    (v) => `      alerts: https://hooks.slack.com/services/${v}`,
  ),
  sample(
    "slack-webhook-url",
    `T${key(UPPER32, 10)}/B${key(UPPER32, 11)}/${key(ALNUM, 24)}`,
    (v) => `{"target":"https://hooks.slack.com/services/${v}"}`,
  ),
  sample(
    "discord-webhook-url",
    key(URLSAFE, 68),
    (v) => `      chat: https://discord.com/api/webhooks/${pick(DIGITS, 18)}/${v}`,
  ),
  sample(
    "discord-webhook-url",
    key(URLSAFE, 68),
    (v) => `{"hook":"https://discordapp.com/api/webhooks/${pick(DIGITS, 19)}/${v}"}`,
  ),
  sample("stripe-secret-key", `sk_live_${key(ALNUM, 99)}`, (v) => `      billing: ${v}`),
  sample("stripe-secret-key", `rk_live_${key(ALNUM, 24)}`, (v) => `{"payments":"${v}"}`),
  sample("stripe-secret-key", `whsec_${key(ALNUM, 32)}`, (v) => `      webhook_signing: ${v}`),
  sample("sendgrid-api-key", `SG.${key(URLSAFE, 22)}.${key(URLSAFE, 43)}`, (v) => `      mail: ${v}`),
  sample(
    "sendgrid-api-key",
    `SG.${key(URLSAFE, 22)}.${key(URLSAFE, 43)}`,
    (v) => `{"smtp_user":"apikey","relay":"${v}"}`,
  ),
  sample("sendinblue-api-key", `xkeysib-${key(HEX, 64)}-${key(ALNUM, 16)}`, (v) => `      brevo: ${v}`),
  sample("sendinblue-api-key", `xkeysib-${key(HEX, 64)}-${key(ALNUM, 16)}`, (v) => `{"newsletter":"${v}"}`),
  sample("mailgun-api-key", `key-${key(HEX, 32)}`, (v) => `      mailgun: ${v}`),
  sample("mailgun-api-key", `key-${key(HEX, 32)}`, (v) => `{"provider":"mailgun","credentials":"${v}"}`),
  sample("mailchimp-api-key", `${key(HEX, 32)}-us21`, (v) => `      newsletter: ${v}`),
  sample("mailchimp-api-key", `${key(HEX, 32)}-us6`, (v) => `{"audience":"main","api":"${v}"}`),
  sample("twilio-api-key", `SK${key(HEX, 32)}`, (v) => `      sms: ${v}`),
  sample("twilio-api-key", `SK${key(HEX, 32)}`, (v) => `{"sms_sid":"${v}"}`),
  sample("jwt", jwt({ sub: "svc-deploy", iat: 1763600000, role: "admin" }), (v) => `      session: ${v}`),
  sample(
    "jwt",
    jwt({ iss: "https://auth.acme.dev", aud: "api", exp: 1893456000 }),
    (v) => `{"request":"GET /api","cookie":"sid=${v}"}`,
  ),
  sample(
    "basic-auth-header",
    b64(`deploy:${key(ALNUM, 14)}`),
    (v) => `      healthcheck: curl -H "Authorization: Basic ${v}" http://web:8080/health`,
  ),
  sample(
    "basic-auth-header",
    b64(`admin:${key(ALNUM, 10)}!`),
    (v) => `{"headers":{"Authorization":"Basic ${v}"}}`,
  ),
  sample(
    "bearer-token",
    key(`${ALNUM}._-`, 40),
    (v) => `      probe: curl -H 'Authorization: Bearer ${v}' https://api.acme.dev`,
  ),
  sample("bearer-token", key(ALNUM, 32), (v) => `{"headers":{"Authorization":"Bearer ${v}"}}`),
  sample(
    "docker-config-auth",
    b64(`acme-bot:${key(ALNUM, 20)}`),
    (v) => `{"auths":{"ghcr.io":{"auth":"${v}"}}}`,
  ),
  sample(
    "docker-config-auth",
    b64(`deploy:${key(ALNUM, 12)}`),
    (v) => `    "registry.acme.dev": { "auth": "${v}" }`,
  ),
  sample("docker-hub-token", `dckr_pat_${key(URLSAFE, 27)}`, (v) => `      hub: ${v}`),
  sample("docker-hub-token", `dckr_pat_${key(URLSAFE, 27)}`, (v) => `{"pull":"${v}"}`),
  sample("url-credentials", key(ALNUM, 18), (v) => `      DATABASE_URL: postgres://app:${v}@db:5432/app`),
  sample(
    "url-credentials",
    `${key(ALNUM, 12)}!x`,
    (v) => `      MONGO: mongodb+srv://svc:${v}@cluster0.acme.mongodb.net/prod?retryWrites=true`,
  ),
  sample("url-credentials", key(ALNUM, 16), (v) => `      CACHE: redis://:${v}@redis:6379/0`),
  sample("url-credentials", key(ALNUM, 14), (v) => `{"broker":"amqp://jobs:${v}@rabbit:5672/"}`),
  sample("vault-token", `hvs.${key(URLSAFE, 91)}`, (v) => `      VAULT: ${v}`),
  sample("vault-token", `hvb.${key(URLSAFE, 140)}`, (v) => `{"batch":"${v}"}`),
  { rule: "private-key-block", value: rsa.body, text: `    tls: |\n${rsa.text}` },
  { rule: "private-key-block", value: openssh.body, text: openssh.text },
  {
    rule: "private-key-block",
    value: ecJsonBody,
    text: `{"type":"service_account","project_id":"acme","key":"-----BEGIN PRIVATE KEY-----\\n${ecJsonBody}\\n-----END PRIVATE KEY-----\\n"}`,
  },
  sample(
    "age-secret-key",
    `AGE-SECRET-KEY-1${key("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)}`,
    (v) => `      identity: ${v}`,
  ),
  sample(
    "age-secret-key",
    `AGE-SECRET-KEY-1${key("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)}`,
    (v) => `{"restore_with":"${v}"}`,
  ),
  sample("telegram-bot-token", `${pick(DIGITS, 10)}:AA${key(URLSAFE, 33)}`, (v) => `      bot: ${v}`),
  sample(
    "telegram-bot-token",
    `${pick(DIGITS, 9)}:AA${key(URLSAFE, 33)}`,
    (v) => `{"error_message":"POST https://api.telegram.org/bot${v}/sendMessage: 429"}`,
  ),
  sample(
    "openai-api-key",
    `sk-proj-${key(URLSAFE, 74)}T3BlbkFJ${key(URLSAFE, 74)}`,
    (v) => `      llm: ${v}`,
  ),
  sample(
    "openai-api-key",
    `sk-${key(ALNUM, 20)}T3BlbkFJ${key(ALNUM, 20)}`,
    (v) => `{"model":"gpt","key_ref":"${v}"}`,
  ),
  sample("anthropic-api-key", `sk-ant-api03-${key(URLSAFE, 93)}AA`, (v) => `      assistant: ${v}`),
  sample("anthropic-api-key", `sk-ant-api03-${key(URLSAFE, 93)}AA`, (v) => `{"claude":"${v}"}`),
  sample(
    "huggingface-token",
    `hf_${key(`${LOWER}ABCDEFGHIJKLMNOPQRSTUVWXYZ`, 34)}`,
    (v) => `      models: ${v}`,
  ),
  sample("huggingface-token", `hf_${key(`${LOWER}ABCDEFGHIJKLMNOPQRSTUVWXYZ`, 34)}`, (v) => `{"hub":"${v}"}`),
  sample("digitalocean-token", `dop_v1_${key(HEX, 64)}`, (v) => `      do: ${v}`),
  sample("digitalocean-token", `doo_v1_${key(HEX, 64)}`, (v) => `{"cloud":"${v}"}`),
  sample("shopify-token", `shpat_${key(HEX, 32)}`, (v) => `      shop: ${v}`),
  sample("shopify-token", `shpss_${key(HEX, 32)}`, (v) => `{"store":"${v}"}`),
  sample("grafana-token", `glsa_${key(ALNUM, 32)}_${key(HEX, 8)}`, (v) => `      dashboards: ${v}`),
  sample("grafana-token", `glc_${key(B64, 64)}`, (v) => `{"metrics":"${v}"}`),
  sample("heroku-api-key", `HRKU-AA${key(URLSAFE, 58)}`, (v) => `      paas: ${v}`),
  sample("heroku-api-key", `HRKU-AA${key(URLSAFE, 58)}`, (v) => `{"legacy":"${v}"}`),
  sample("linear-api-key", `lin_api_${key(ALNUM, 40)}`, (v) => `      issues: ${v}`),
  sample("linear-api-key", `lin_api_${key(ALNUM, 40)}`, (v) => `{"tracker":"${v}"}`),
  sample("databricks-token", `dapi${key(HEX, 32)}`, (v) => `      lakehouse: ${v}`),
  sample("databricks-token", `dapi${key(HEX, 32)}-2`, (v) => `{"warehouse":"${v}"}`),
  sample("doppler-token", `dp.pt.${key(ALNUM, 43)}`, (v) => `      config_source: ${v}`),
  sample("doppler-token", `dp.pt.${key(ALNUM, 43)}`, (v) => `{"doppler":"${v}"}`),
  sample("pulumi-token", `pul-${key(HEX, 40)}`, (v) => `      iac: ${v}`),
  sample("pulumi-token", `pul-${key(HEX, 40)}`, (v) => `{"stack":"${v}"}`),
  sample("postman-api-key", `PMAK-${key(HEX, 24)}-${key(HEX, 34)}`, (v) => `      api_tests: ${v}`),
  sample("postman-api-key", `PMAK-${key(HEX, 24)}-${key(HEX, 34)}`, (v) => `{"collection":"${v}"}`),
  sample("tailscale-key", `tskey-auth-${key(ALNUM, 17)}-${key(ALNUM, 33)}`, (v) => `      mesh: ${v}`),
  sample("tailscale-key", `tskey-api-${key(ALNUM, 17)}-${key(ALNUM, 33)}`, (v) => `{"tailnet":"${v}"}`),
  sample("figma-token", `figd_${key(URLSAFE, 43)}`, (v) => `      design: ${v}`),
  sample("figma-token", `figd_${key(URLSAFE, 43)}`, (v) => `{"figma":"${v}"}`),
  sample("groq-api-key", `gsk_${key(ALNUM, 52)}`, (v) => `      inference: ${v}`),
  sample("groq-api-key", `gsk_${key(ALNUM, 52)}`, (v) => `{"groq":"${v}"}`),
  sample("notion-token", `ntn_${pick(DIGITS, 11)}${key(ALNUM, 35)}`, (v) => `      wiki: ${v}`),
  sample("notion-token", `ntn_${pick(DIGITS, 11)}${key(ALNUM, 35)}`, (v) => `{"notion":"${v}"}`),
  sample("vercel-token", `vcp_${key(ALNUM, 40)}`, (v) => `      frontend: ${v}`),
  sample("vercel-token", `vck_${key(ALNUM, 40)}`, (v) => `{"vercel":"${v}"}`),
  sample("cloudflare-token", `cfut_${key(ALNUM, 40)}${key(HEX, 8)}`, (v) => `      dns: ${v}`),
  sample("cloudflare-token", `cfat_${key(ALNUM, 40)}${key(HEX, 8)}`, (v) => `{"zone":"${v}"}`),
  sample(
    "onepassword-token",
    `ops_${b64(JSON.stringify({ signInAddress: "acme.1password.com", userAuth: { method: "SRPg-4096", alg: "PBES2g-HS256", iterations: 650000, salt: key(URLSAFE, 22) }, email: "svc@acme.dev", srpX: key(HEX, 64), muk: { alg: "A256GCM", ext: true, k: key(URLSAFE, 43), key_ops: ["encrypt", "decrypt"], kty: "oct", kid: "mp" }, secretKey: key(ALNUM, 34), throttleSecret: { seed: key(HEX, 64), deviceUuid: key(ALNUM, 26) }, deviceUuid: key(ALNUM, 26) }))}`,
    (v) => `      secrets_backend: ${v}`,
  ),
  sample(
    "onepassword-token",
    `ops_${b64(JSON.stringify({ signInAddress: "my.1password.com", userAuth: { method: "SRPg-4096", alg: "PBES2g-HS256", iterations: 650000, salt: key(URLSAFE, 22) }, email: "ci@acme.dev", srpX: key(HEX, 64), muk: { alg: "A256GCM", k: key(URLSAFE, 43), kty: "oct", kid: "mp" }, secretKey: key(ALNUM, 34), deviceUuid: key(ALNUM, 26) }))}`,
    (v) => `{"op":"${v}"}`,
  ),
  sample("secret-assignment", key(`${ALNUM}#!%`, 16), (v) => `      DB_PASSWORD: ${v}`),
  sample("secret-assignment", key(ALNUM, 24), (v) => `SMTP_PASS=${v}`),
  sample("secret-json-field", key(ALNUM, 32), (v) => `{"oauth":{"client_secret":"${v}"}}`),
  sample("secret-json-field", `${key(ALNUM, 10)}-${key(ALNUM, 6)}`, (v) => `    "api_token": "${v}",`),
  // Free text (issue 21): credentials inside the string values of si's event lines and state files.
  // Command-line flags
  sample("secret-flag", key(`${ALNUM}#%`, 18), (v) =>
    event("error_message", `pg_dump --host db --db-password ${v} --format custom: exit 1`),
  ),
  sample("secret-flag", key(ALNUM, 24), (v) =>
    event("command_line", `si-deploy --secret=${v} --target edge-2`),
  ),
  sample("secret-flag", key(URLSAFE, 32), (v) =>
    event("command_line", `registry-login --token ${v} ghcr.io`),
  ),
  sample("secret-flag", `${key(ALNUM, 14)}!`, (v) =>
    event("error_message", `mysql -h db -u root -p${v} app < dump.sql: ERROR 1045`),
  ),
  sample("secret-flag", key(ALNUM, 16), (v) =>
    event("command_line", `sshpass -p ${v} ssh deploy@edge-1 uptime`),
  ),
  sample("secret-flag", key(ALNUM, 20), (v) => `      healthcheck: redis-cli -h cache -a ${v} ping`),
  // HTTP headers dumped in a message
  sample("secret-assignment", key(HEX, 32), (v) =>
    event("request", `POST /v1/metrics HTTP/1.1\r\nHost: api.acme.dev\r\nX-Api-Key: ${v}\r\nAccept: */*`),
  ),
  sample("secret-header", key(HEX, 40), (v) =>
    event("error_message", `GET https://api.github.com/user failed (401); sent Authorization: Token ${v}`),
  ),
  sample("basic-auth-header", b64(`ci-bot:${key(ALNUM, 16)}`), (v) =>
    event("request", `headers={'Authorization': 'Basic ${v}', 'Accept': 'application/json'}`),
  ),
  sample("secret-header", key(URLSAFE, 32), (v) =>
    event("request", `GET /admin HTTP/1.1 Cookie: session=${v}; theme=dark`),
  ),
  sample("secret-header", key(HEX, 40), (v) =>
    event("error_message", `upstream replied Set-Cookie: remember_token=${v}; Path=/; HttpOnly`),
  ),
  sample(
    "secret-header",
    key(ALNUM, 28),
    (v) => `      probe: curl -H 'Authorization: Token ${v}' http://web:8080/metrics`,
  ),
  // KEY=value and KEY: value inside a sentence, under secret-like key words
  sample("secret-assignment", key(HEX, 32), (v) =>
    event("error_message", `datadog-agent exited: DD_API_KEY=${v} was rejected (403)`),
  ),
  sample("secret-assignment", key(HEX, 32), (v) =>
    event("error_message", `sms notify failed with TWILIO_AUTH_TOKEN=${v}, account AC0042`),
  ),
  sample("secret-assignment", `FwoGZXIvYXdzE${key(B64, 120)}`, (v) =>
    event("error_message", `aws s3 cp failed: AWS_SESSION_TOKEN=${v} expired`),
  ),
  sample("secret-assignment", `${key(ALNUM, 12)}#9`, (v) =>
    event("error_message", `FATAL: password authentication failed (user=app password=${v})`),
  ),
  sample(
    "secret-assignment",
    key(ALNUM, 20),
    (v) => `      note: rotated, the old client_secret: ${v} is revoked`,
  ),
  // URL query parameters and connection strings
  sample("secret-query-param", key(URLSAFE, 32), (v) =>
    event("error_message", `GET https://export.acme.dev/v1/dump?token=${v}&format=csv returned 502`),
  ),
  sample("secret-query-param", `${key(ALNUM, 14)}2`, (v) =>
    event("error_message", `login redirect https://auth.acme.dev/cb?user=ops&password=${v}&next=/`),
  ),
  sample("secret-query-param", key(B64, 24), (v) =>
    event(
      "error_message",
      `upload to https://acme.blob.core.windows.net/backups/x.tgz?sv=2022-11-02&sig=${v} failed`,
    ),
  ),
  sample(
    "secret-query-param",
    key(ALNUM, 18),
    (v) => `      DB_URL: jdbc:sqlserver://db:1433;databaseName=app;user=sa;password=${v};encrypt=true`,
  ),
  sample("secret-query-param", key(ALNUM, 16), (v) =>
    event("error_message", `jdbc:mysql://db:3306/app?user=app&password=${v}: Communications link failure`),
  ),
  sample("url-credentials", key(ALNUM, 20), (v) =>
    event("error_message", `redis: NOAUTH via redis://:${v}@cache:6379/0`),
  ),
  sample("url-credentials", key(ALNUM, 18), (v) =>
    event("error_message", `amqps://jobs:${v}@mq.acme.internal:5671/%2f: connection reset`),
  ),
  sample("url-credentials", key(ALNUM, 16), (v) =>
    event("error_message", `mongodb+srv://svc:${v}@cluster0.acme.mongodb.net/prod: auth failed`),
  ),
  sample("url-credentials", key(ALNUM, 14), (v) =>
    event("command_line", `git clone ssh://deploy:${v}@git.acme.internal:2222/web.git`),
  ),
  // base64-wrapped secrets
  sample(
    "base64-private-key",
    b64(`-----BEGIN PRIVATE KEY-----\n${key(B64, 64)}\n${key(B64, 64)}\n-----END PRIVATE KEY-----\n`),
    (v) => event("request", `{"apiVersion":"v1","kind":"ConfigMap","data":{"tls.key":"${v}"}}`),
  ),
  sample(
    "base64-private-key",
    b64(`-----BEGIN RSA PRIVATE KEY-----\n${key(B64, 64)}\n-----END RSA PRIVATE KEY-----\n`),
    (v) => `      TLS_KEY_B64: ${v}`,
  ),
  {
    rule: "kubernetes-secret-data",
    value: b64(key(ALNUM, 18)),
    text: "",
  },
  {
    rule: "kubernetes-secret-data",
    value: b64(`postgres://app:${key(ALNUM, 16)}@db/app`),
    text: "",
  },
  // whole values: a value under a secret-like key holding a token-shaped part is removed whole
  sample("secret-json-field", `pw-ghp_${key(ALNUM, 36)}-tail`, (v) => `{"vars":{"DB_PASSWORD":"${v}"}}`),
  sample(
    "secret-assignment",
    `${key(`${ALNUM}#`, 16)}-ghp_${key(ALNUM, 36)}`,
    (v) => `      SMTP_PASSWORD: ${v}`,
  ),
];

// The Kubernetes Secrets' texts hold their values: a manifest in a release, and kubectl's JSON in a log.
{
  const [yaml, json] = SECRET_SAMPLES.filter((x) => x.rule === "kubernetes-secret-data") as SecretSample[];
  yaml!.text = [
    "apiVersion: v1",
    "kind: Secret",
    "metadata:",
    "  name: web-db",
    "type: Opaque",
    "data:",
    `  password: ${yaml!.value}`,
    `  username: ${b64("app")}`,
  ].join("\n");
  json!.text = `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"web-db"},"data":{"DATABASE_URL":"${json!.value}"},"type":"Opaque"}`;
}

/** Text that looks like a credential to a careless scanner and is not one. */
export const BENIGN_SAMPLES: readonly BenignSample[] = [
  { label: "uuid", text: "      request_id: 123e4567-e89b-42d3-a456-426614174000" },
  {
    label: "uuid in JSON",
    text: '{"deployment_id":"9b2f6c1e-4a7d-4e2b-8f3a-0c5d6e7f8a9b","status":"succeeded"}',
  },
  {
    label: "sha256",
    text: "      checksum: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  },
  {
    label: "sha256 sidecar",
    text: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  20261120T100000Z.tar.gz",
  },
  { label: "git commit", text: '{"release":"r-41","commit":"4b825dc642cb6eb9a060e54bf8d69288fbee4904"}' },
  { label: "git short hash", text: "      revision: 4b825dc" },
  {
    label: "image digest",
    text: "    image: ghcr.io/acme/web@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
  },
  { label: "image tag", text: "    image: registry.acme.dev/acme/worker:2026.11.20-3" },
  { label: "base64 config", text: "      LOG_CONFIG: eyJsb2dfbGV2ZWwiOiJpbmZvIiwiZm9ybWF0IjoianNvbiJ9" },
  { label: "base64 blob", text: '{"feature_flags":"Y2hlY2tvdXQ9b24sYmV0YT1vZmYsZGFyaz1vbg=="}' },
  { label: "${VAR} password", text: "      DB_PASSWORD: ${DB_PASSWORD}" },
  { label: "${VAR} in URL", text: "      DATABASE_URL: postgres://app:${DB_PASSWORD}@db:5432/app" },
  { label: "$VAR token", text: "      GITHUB_TOKEN: $GITHUB_TOKEN" },
  {
    label: "compose secret ref",
    text: "      - source: db_password\n        target: /run/secrets/db_password",
  },
  { label: "password_policy strong", text: "      password_policy: strong" },
  { label: "password policy required", text: '{"password_policy":"required","token_count":3}' },
  { label: "token_count", text: "      token_count: 12" },
  { label: "secret rotation none", text: "      secret_rotation: none" },
  { label: "PASSWORD_MIN_LENGTH", text: "PASSWORD_MIN_LENGTH=14" },
  { label: "token ttl", text: "      TOKEN_TTL: 30m" },
  { label: "api key header name", text: "      api_key_header: X-Api-Key" },
  { label: "password file path", text: "      DB_PASSWORD_FILE: /run/secrets/db_password" },
  { label: "token url", text: "      token_url: https://auth.acme.dev/oauth/token" },
  { label: "redacted", text: '{"fields":{"api_token":"<redacted>","bot_token":"<redacted>"}}' },
  { label: "si ciphertext", text: "DB_PASSWORD=encrypted:si:v2:YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOQ" },
  { label: "empty secret", text: '      SMTP_PASSWORD: ""' },
  { label: "url without credentials", text: "      upstream: https://api.acme.dev:8443/v1/health" },
  { label: "ssh url", text: '{"repo":"git@github.com:acme/web.git"}' },
  { label: "basic auth prose", text: '{"message":"Basic authentication is required for the admin panel"}' },
  {
    label: "bearer prose",
    text: '{"guidance":"Bearer tokens expire after one hour; re-run si paas login."}',
  },
  { label: "disk usage", text: '{"message":"disk usage 91% on edge-2","guidance":"Prune old releases."}' },
  { label: "timestamp", text: '{"timestamp":"2026-11-20T10:00:00.123456Z","command":"deploy"}' },
  {
    label: "public key",
    text: "      ssh_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0bm9wcXJzdHV2d3h5ejAxMjM0NTY3ODlhYmNk deploy@acme",
  },
  {
    label: "age recipient",
    text: "# si-vault:recipient age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
  },
  {
    label: "certificate",
    text: "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGUgaXMgcHVibGljIGluZm9ybWF0aW9u\n-----END CERTIFICATE-----",
  },
  { label: "semver", text: '{"tool":{"name":"paas-backup","version":"0.1.0"}}' },
  { label: "placeholder", text: "      SENDGRID_API_KEY: <your-api-key>" },
  { label: "changeme", text: "      ADMIN_PASSWORD: changeme" },
  // issue 21: the benign look-alikes of a busy log, also inside event lines' string values
  { label: "ULID", text: event("error_message", "job 01HF3Z8Q9K7X2M4N6P8R0T2V4W timed out") },
  {
    label: "ARN",
    text: event("error_message", "AccessDenied on arn:aws:iam::123456789012:role/acme-deploy"),
  },
  {
    label: "password_min_length",
    text: event("error_message", "policy check: password_min_length=12 not met"),
  },
  { label: "${{ secrets.X }}", text: "      token: ${{ secrets.DEPLOY_TOKEN }}" },
  { label: "masked", text: event("command_line", "si-deploy --token ******** --target edge-2") },
  { label: "redacted in text", text: event("error_message", "login failed: password=<redacted> for app") },
  {
    label: "commit SHA in text",
    text: event("error_message", "build of 4b825dc642cb6eb9a060e54bf8d69288fbee4904 failed"),
  },
  {
    label: "digest in text",
    text: event(
      "error_message",
      "pull ghcr.io/acme/web@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae: manifest unknown",
    ),
  },
  {
    label: "uuid session in text",
    text: event(
      "error_message",
      "token expired for session 123e4567-e89b-42d3-a456-426614174000; re-run si paas login",
    ),
  },
  { label: "password prose", text: event("error_message", "password policy requires 12 characters") },
  {
    label: "password file flag",
    text: event("command_line", "pg_dump --password-file /run/secrets/db_password"),
  },
  { label: "flag without value", text: event("command_line", "psql --no-password --host db") },
  { label: "header prose", text: event("error_message", "Authorization header missing; cookie: none") },
  { label: "plain cookie", text: event("request", "Cookie: theme=dark; lang=en") },
  {
    label: "plain query",
    text: event("error_message", "GET /v1/releases?page=2&sort=desc&limit=50 returned 500"),
  },
  { label: "token var", text: event("error_message", "TOKEN=${DEPLOY_TOKEN} is unset") },
  {
    label: "checksum in text",
    text: event(
      "error_message",
      "checksum mismatch: expected e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
  },
  { label: "AWS example key", text: "      AWS_ACCESS_KEY_ID_EXAMPLE: AKIAIOSFODNN7EXAMPLE" },
  {
    label: "aws docs example",
    text: event("error_message", "see docs: AKIAIOSFODNN7EXAMPLE is an example key"),
  },
];

/** A releases/<id>/compose.yaml holding the given lines under a service's labels; returns the text and each sample's first line number. */
export function composeWith(samples: readonly { text: string }[]): { text: string; lines: number[] } {
  const out = ["services:", "  web:", "    image: ghcr.io/acme/web:r-41", "    labels:"];
  const lines: number[] = [];
  for (const s of samples) {
    lines.push(out.length + 1);
    out.push(...s.text.split("\n"));
  }
  return { text: `${out.join("\n")}\n`, lines };
}
