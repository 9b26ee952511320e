#!/usr/bin/env node
import '../dist/cli/burrow.mjs';
