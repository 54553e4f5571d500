// Validate custom resources against the validators published in the npm packages
// @kubernetes-models/keda and @kubernetes-models/external-secrets (fetched into
// .tools/crd-schemas by `make chart-tools`), the way an API server with
// fieldValidation=Strict would.
//
//   node validate_crs.mjs NODE_MODULES_DIR  < [object, ...]  > [{"schema": [...], "unknown": [...]}, ...]
//
// "schema": what the package's validator refuses (types, enums, required fields).
// "unknown": fields the validator never looked at. The packages' validators do not refuse
// undeclared fields, so we run them on a proxy that records every property they read: a key
// of an object that was read by name nowhere, in an object that was not iterated as a map
// (labels, trigger metadata: ajv iterates those), is a field the schema does not declare.
// An object kind not in KINDS is an error, never a silent pass.

import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const KINDS = {
  "keda.sh/v1alpha1/ScaledObject": "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject.js",
  "keda.sh/v1alpha1/TriggerAuthentication":
    "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication.js",
  "external-secrets.io/v1/ExternalSecret":
    "@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret.js",
};

function tracked(value, path, objects, iterated) {
  if (value === null || typeof value !== "object") return value;
  const reads = new Set();
  objects.push({ path, value, reads });
  const children = new Map();
  return new Proxy(value, {
    get(target, key, receiver) {
      const found = Reflect.get(target, key, receiver);
      if (typeof key !== "string" || !Object.hasOwn(target, key)) return found;
      reads.add(key);
      if (!children.has(key)) {
        children.set(key, tracked(found, `${path}/${key}`, objects, iterated));
      }
      return children.get(key);
    },
    ownKeys(target) {
      iterated.add(path);
      return Reflect.ownKeys(target);
    },
  });
}

async function validate(nodeModules, obj) {
  const id = `${obj.apiVersion}/${obj.kind}`;
  if (!(id in KINDS)) return { schema: [`no validator for ${id} in validate_crs.mjs`], unknown: [] };
  const module = await import(pathToFileURL(`${nodeModules}/${KINDS[id]}`).href);
  const model = module[obj.kind];
  const objects = [];
  const iterated = new Set();
  const schema = [];
  try {
    // The model's own validate(), run on the tracked object instead of a copy.
    model.prototype.validate.call(tracked(obj, "", objects, iterated));
  } catch (err) {
    if (!Array.isArray(err.errors)) throw err;
    for (const e of err.errors) schema.push(`${e.instancePath || "<root>"}: ${e.message}`);
  }
  const unknown = [];
  for (const { path, value, reads } of objects) {
    if (Array.isArray(value) || iterated.has(path)) continue;
    for (const key of Object.keys(value)) {
      if (!reads.has(key)) unknown.push(`${path}/${key}: unknown field`);
    }
  }
  return { schema, unknown };
}

const nodeModules = process.argv[2];
if (!nodeModules) {
  console.error("usage: node validate_crs.mjs NODE_MODULES_DIR < objects.json");
  process.exit(2);
}
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const obj of objects) results.push(await validate(nodeModules, obj));
process.stdout.write(JSON.stringify(results));
