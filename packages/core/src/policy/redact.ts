// @paas-backup/core/redact: the secret scanner (what never enters a backup, a log line or an error
// message) and the gitleaks rules it carries.
export * from "./secrets.js";
export {
  GITLEAKS_RULES,
  GITLEAKS_GLOBAL_ALLOW,
  GITLEAKS_COMMIT,
  type GitleaksRule,
  type GitleaksPattern,
} from "./gitleaks-rules.js";
