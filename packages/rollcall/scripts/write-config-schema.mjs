#!/usr/bin/env node
// Writes schema/rollcall.config.schema.json from the zod schema (run after a build:
// `npm run schema -w rollcall`). A test fails when the committed file is out of date.
import { writeFileSync } from 'node:fs';
import { configFileJsonSchema } from '../dist/index.js';

const target = new URL('../schema/rollcall.config.schema.json', import.meta.url);
writeFileSync(target, `${JSON.stringify(configFileJsonSchema(), null, 2)}\n`);
console.log(`wrote ${target.pathname}`);
