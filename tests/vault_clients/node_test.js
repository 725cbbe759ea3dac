// node-vault (from npm, pinned in node/package.json) against pgvault serve's /v1/
// (tests/vault_api_cluster.sh). Environment: VAULT_ADDR, VAULT_CACERT, ADMIN_TOKEN,
// ADMIN_ROLE. Prints one "ok - ..." or "not ok - ..." line per check.
'use strict';
const fs = require('fs');
const path = require('path');
const nodeVault = require(path.join(__dirname, 'node', 'node_modules', 'node-vault'));

let failed = 0;
// JSON with object keys sorted: key order carries no meaning (Vault itself sorts them).
function canonical(v) {
    if (Array.isArray(v)) return v.map(canonical);
    if (v && typeof v === 'object') {
        return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]));
    }
    return v;
}

function check(name, expected, actual) {
    const e = JSON.stringify(canonical(expected));
    const a = JSON.stringify(canonical(actual));
    if (e === a) {
        console.log(`ok - node-vault: ${name}`);
    } else {
        failed += 1;
        console.log(`not ok - node-vault: ${name}\n    expected: ${e}\n    actual:   ${a}`);
    }
}

async function main() {
    const vault = nodeVault({
        apiVersion: 'v1',
        endpoint: process.env.VAULT_ADDR,
        token: process.env.ADMIN_TOKEN,
        requestOptions: { ca: fs.readFileSync(process.env.VAULT_CACERT) },
    });
    const obj = { user: 'node', port: 3000, debug: false, tags: ['x', 'y'] };
    let r = await vault.write('secret/data/node/app', { data: obj });
    check('write: version 1', 1, r.data.version);
    r = await vault.read('secret/data/node/app');
    check('read: the object unchanged', obj, r.data.data);
    await vault.write('secret/data/node/plain', { data: { value: 'plain-from-node' } });
    r = await vault.read('secret/data/node/plain');
    check('read of a {value} secret', { value: 'plain-from-node' }, r.data.data);
    r = await vault.update('secret/data/node/app', { data: { port: 3001, debug: null } });
    check('update (PATCH, merge-patch+json): version 2', 2, r.data.version);
    r = await vault.read('secret/data/node/app');
    check('... merged', { user: 'node', port: 3001, tags: ['x', 'y'] }, r.data.data);
    r = await vault.list('secret/metadata/node');
    check('list (LIST method)', ['app', 'plain'], r.data.keys);
    r = await vault.tokenLookupSelf();
    check('tokenLookupSelf: the role as the policy', [process.env.ADMIN_ROLE], r.data.policies);
    check('... and never the token', false, JSON.stringify(r).includes(process.env.ADMIN_TOKEN));
    await vault.delete('secret/metadata/node/app');
    let status = 'no error';
    try {
        await vault.read('secret/data/node/app');
    } catch (e) {
        status = e.response ? e.response.statusCode : String(e);
    }
    check('delete, then read: 404', 404, status);
    const bad = nodeVault({
        apiVersion: 'v1',
        endpoint: process.env.VAULT_ADDR,
        token: 'pgv_' + 'B'.repeat(43),
        requestOptions: { ca: fs.readFileSync(process.env.VAULT_CACERT) },
    });
    let denied = 'no error';
    try {
        await bad.read('secret/data/node/plain');
    } catch (e) {
        denied = `${e.response ? e.response.statusCode : ''} ${e.message}`;
    }
    check('an unknown token: 403 permission denied', '403 permission denied', denied);
}

main()
    .catch((e) => {
        failed += 1;
        console.log(`not ok - node-vault: unexpected error: ${e && e.message}`);
    })
    .then(() => process.exit(failed ? 1 : 0));
