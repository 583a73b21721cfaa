// Checks a vercel.json with the Vercel CLI's own validator (the one `vercel build` and `vercel dev`
// apply before anything else). The CLI comes from `npm ci --prefix deploy`, or VERCEL_CLI_DIR.
//   node deploy/check_vercel_config.mjs deploy/vercel_config.json
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const cliDir = process.env.VERCEL_CLI_DIR
  ? pathToFileURL(`${process.env.VERCEL_CLI_DIR.replace(/\/$/, "")}/`)
  : new URL("./node_modules/vercel/", import.meta.url);
const { getConfigValidator } = await import(new URL("dist/chunks/config-validator.mjs", cliDir).href);
const { version } = JSON.parse(readFileSync(new URL("package.json", cliDir), "utf8"));

const path = process.argv[2];
const config = JSON.parse(readFileSync(path, "utf8"));
const validate = getConfigValidator();
if (!validate(config)) {
  for (const error of validate.errors) console.error(`${path}${error.dataPath}: ${error.message}`);
  process.exit(1);
}
console.log(`${path}: valid for vercel ${version}`);
