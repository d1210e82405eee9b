export const TOOL_NAME = "paas-backup";
export const TOOL_VERSION = "0.1.0";
