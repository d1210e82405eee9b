// The doctor lives in doctor/: types, facts (what several checks read, read once), one function per
// check, and runDoctor running the list. This path stays for its importers.
export { runDoctor, DOCTOR_CHECKS } from "./doctor/run.js";
export type { DoctorCheck, DoctorOptions, DoctorReport } from "./doctor/types.js";
