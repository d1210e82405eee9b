// @paas-backup/core/records: what restores leave behind: the block marker si tooling reads before a
// deploy, incident records, audit events.
export { readBlock, writeBlock, writeBlockIn, clearBlock, BLOCK_FILE, type BlockRecord } from "./block.js";
export { writeIncident, listRecords, newIncidentRecord, type IncidentRecord } from "./incident.js";
export { appendAuditEvent } from "./audit.js";
