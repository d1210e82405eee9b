// The sample state root lives in core (the CLI's demo needs it at run time); tests keep importing it from here.
export * from "@paas-backup/core/sample";
