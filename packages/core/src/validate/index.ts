// @paas-backup/core/validate: the doctor (one function per check), the events list, and which files
// a snapshot proved it scanned.
export { runDoctor, type DoctorOptions, type DoctorReport, type DoctorCheck } from "./doctor.js";
export { listEvents, readEventLog, normaliseEvent, redactForOutput, type EventRecord } from "./events.js";
export { filesScannedAtSnapshot, type ScannedFiles } from "./proven.js";
