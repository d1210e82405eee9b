#!/usr/bin/env node
// Dependencies point one way (issue 11 §2, issue 19 §4): no cycle between the folders of a package's
// src/, and none between its files. Folders are the top-level directories under src/ (files at the
// top, like errors.ts, are nodes of their own; the index.ts barrel is left out: it re-exports
// everything and nothing imports it). Type-only and dynamic imports count: they tie folders together too.
// Where src/ has a commands/ folder (the CLI), one more rule: a command never imports another
// command; what two commands share lives in options/, host/, render/ or ops/.
// Usage: node scripts/check-import-cycles.mjs [--edges] [src dir ...]
//   (default: every packages/*/src; paths are resolved from the current directory)
// Exit 0 when all holds; 1 with each cycle or command import printed; 2 when a path is not a
// folder with sources (a check of nothing must not pass).
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

const args = process.argv.slice(2);
// --edges: also print every folder dependency as JSON ({"from": ["to", ...]}), for tests of the documented order
const printEdges = args.includes("--edges");
const paths = args.filter((a) => a !== "--edges");
const packagesDir = resolve(import.meta.dirname, "../packages");
const roots = paths.length
  ? paths.map((p) => resolve(p))
  : readdirSync(packagesDir)
      .map((name) => join(packagesDir, name, "src"))
      .filter((dir) => existsSync(dir))
      .sort();
for (const root of roots) {
  if (!existsSync(root) || !statSync(root).isDirectory() || sources(root).length === 0) {
    console.error(`${root}: not a folder with .ts/.js sources: nothing to check`);
    process.exit(2);
  }
}

function sources(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(m?ts|m?js)$/.test(name) && !/\.d\.ts$/.test(name) ? [path] : [];
  });
}

/** relative specifiers of static imports, re-exports and dynamic imports */
function importsOf(text) {
  const out = [];
  const re =
    /(?:^|[\s;])(?:import|export)\s[^;'"]*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|^\s*import\s*["']([^"']+)["']/gm;
  for (let m; (m = re.exec(text));) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec.startsWith(".")) out.push(spec);
  }
  return out;
}

function resolveSpecifier(from, spec, files) {
  const base = resolve(dirname(from), spec);
  for (const candidate of [
    base,
    base.replace(/\.js$/, ".ts"),
    base.replace(/\.mjs$/, ".mts"),
    `${base}.ts`,
    join(base, "index.ts"),
  ])
    if (files.has(candidate)) return candidate;
  return null;
}

/** Tarjan's strongly connected components; every component of two or more nodes (or a self-loop) is a cycle */
function cycles(graph) {
  let index = 0;
  const stack = [];
  const info = new Map();
  const found = [];
  const visit = (v) => {
    info.set(v, { index, low: index, onStack: true });
    index += 1;
    stack.push(v);
    for (const w of graph.get(v) ?? []) {
      if (!info.has(w)) {
        visit(w);
        info.get(v).low = Math.min(info.get(v).low, info.get(w).low);
      } else if (info.get(w).onStack) info.get(v).low = Math.min(info.get(v).low, info.get(w).index);
    }
    if (info.get(v).low === info.get(v).index) {
      const component = [];
      let w;
      do {
        w = stack.pop();
        info.get(w).onStack = false;
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? new Set()).has(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!info.has(v)) visit(v);
  return found;
}

/** one path through a component, to show how the cycle closes */
function pathThrough(graph, component) {
  const members = new Set(component);
  const start = component[0];
  const seen = new Map([[start, null]]);
  const queue = [start];
  while (queue.length) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let x = v; x !== start; x = seen.get(x)) path.splice(1, 0, x);
        return [...path, start].join(" -> ");
      }
      if (!seen.has(w)) {
        seen.set(w, v);
        queue.push(w);
      }
    }
  }
  return component.join(", ");
}

let failed = false;
for (const root of roots) {
  const files = new Set(sources(root));
  const folderOf = (file) => {
    const rel = relative(root, file);
    return rel.includes(sep) ? rel.split(sep)[0] : rel.replace(/\.[^.]+$/, "");
  };
  const folderGraph = new Map();
  const fileGraph = new Map();
  const evidence = new Map();
  for (const file of files) {
    if (relative(root, file) === "index.ts") continue;
    const from = folderOf(file);
    if (!folderGraph.has(from)) folderGraph.set(from, new Set());
    fileGraph.set(file, new Set());
    for (const spec of importsOf(readFileSync(file, "utf8"))) {
      const target = resolveSpecifier(file, spec, files);
      if (!target) continue;
      fileGraph.get(file).add(target);
      const to = folderOf(target);
      if (to === from) continue;
      folderGraph.get(from).add(to);
      if (!evidence.has(`${from}>${to}`))
        evidence.set(`${from}>${to}`, `${relative(root, file)} imports ${spec}`);
    }
  }
  const commandImports = [];
  for (const [file, targets] of fileGraph)
    if (folderOf(file) === "commands")
      for (const target of targets) if (folderOf(target) === "commands") commandImports.push([file, target]);
  for (const [file, target] of commandImports) {
    failed = true;
    console.error(
      `command imports command in ${relative(process.cwd(), root) || root}: ${relative(root, file)} imports ${relative(root, target)}; move what they share to options/, host/, render/ or ops/`,
    );
  }
  const folderCycles = cycles(folderGraph);
  const fileCycles = cycles(fileGraph);
  for (const c of folderCycles) {
    failed = true;
    const path = pathThrough(folderGraph, c);
    const steps = path.split(" -> ");
    console.error(
      `folder cycle in ${relative(process.cwd(), root) || root} among ${c.join(", ")}, e.g. ${path}`,
    );
    for (let i = 0; i + 1 < steps.length; i++)
      console.error(`  ${steps[i]} -> ${steps[i + 1]}: ${evidence.get(`${steps[i]}>${steps[i + 1]}`)}`);
  }
  for (const c of fileCycles) {
    failed = true;
    console.error(
      `file cycle in ${relative(process.cwd(), root) || root}: ${pathThrough(fileGraph, c)
        .split(" -> ")
        .map((f) => relative(root, f))
        .join(" -> ")}`,
    );
  }
  if (folderCycles.length === 0 && fileCycles.length === 0 && commandImports.length === 0) {
    // the order the folders may depend in, lowest first (for the README's architecture section)
    const order = [];
    const done = new Set();
    const place = (v) => {
      if (done.has(v)) return;
      done.add(v);
      for (const w of [...(folderGraph.get(v) ?? [])].sort()) place(w);
      order.push(v);
    };
    for (const v of [...folderGraph.keys()].sort()) place(v);
    console.log(
      `no import cycles in ${relative(process.cwd(), root) || root}; folders, lowest first: ${order.join(", ")}`,
    );
    if (printEdges)
      console.log(JSON.stringify(Object.fromEntries([...folderGraph].map(([k, v]) => [k, [...v].sort()]))));
  }
}
process.exit(failed ? 1 : 0);
