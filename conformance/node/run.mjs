#!/usr/bin/env node
// Drives a Pluggy API (the local stand-in, `python -m sandbox`) with Pluggy's official Node SDK,
// pluggy-sdk, and checks every answer against the type the SDK declares for it: the SDK itself
// checks nothing, so a call that merely resolves proves little. One line per call, "ok NAME" or
// "FAIL NAME: reason"; the exit status is 1 if any call failed.
//
//   node run.mjs --base-url http://127.0.0.1:8700 --client-id UUID --client-secret SECRET
import http from 'node:http';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

import Ajv from 'ajv';
import pluggy from 'pluggy-sdk';
import { createGenerator } from 'ts-json-schema-generator';

const TYPES_FILE = fileURLToPath(new URL('./sdk-types.ts', import.meta.url));
const SANDBOX_CONNECTOR = 0; // "Pluggy Bank"
const PERSONAL_CONNECTOR = 2; // "Pluggy Bank Personal": no item of the run uses it, its status may change
const MFA_CONNECTOR = 4; // "Pluggy Bank MFA"
const OPEN_FINANCE_CONNECTOR = 600; // "Pluggy Bank Open Finance": a CPF, then OAuth at the institution
const ACCOUNT_TYPES = ['BANK', 'CREDIT']; // a bank account's rows and a card's (with creditCardMetadata)
const GOOD_CREDENTIALS = { user: 'user-ok', password: 'password-ok' };
const APP_APPROVAL_CREDENTIALS = { user: 'user-ok-app-approval', password: 'password-ok' };
const LOCKED_CREDENTIALS = { user: 'user-locked', password: 'password-ok' };
const CPF = { cpf: '416.799.495-00' };
const MFA_TOKEN = '123456';
const FINISHED = ['UPDATED', 'LOGIN_ERROR', 'OUTDATED'];
const DEADLINE_MS = 20_000;
const POLL_MS = 50;

const options = parseArgs({
  options: {
    'base-url': { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
  },
}).values;
for (const name of ['base-url', 'client-id', 'client-secret']) {
  if (!options[name]) {
    console.error(`usage: node run.mjs --base-url URL --client-id ID --client-secret SECRET (missing --${name})`);
    process.exit(2);
  }
}

// Answers ---------------------------------------------------------------------------------------

/** The JSON Schemas of sdk-types.ts, read as the live API's answers need:
 * - each `Date` of the declarations must be a Date instance: the SDK turns only
 *   "YYYY-MM-DDTHH:mm:ss.sssZ" strings into Dates (transforms.js), so any other spelling reaches its
 *   users as a string where they were promised a Date;
 * - an optional property (`name?: T`) may also be null: Pluggy serialises absent values as null, as
 *   the Python SDK's models (Optional[...] = None) and tests/oas.py's reading of the OpenAPI
 *   document admit. Required properties stay as declared. */
function sdkSchemas() {
  const generator = createGenerator({
    path: TYPES_FILE,
    type: '*',
    // TypeScript's types are open: properties the SDK does not declare are allowed.
    additionalProperties: true,
    skipTypeCheck: true,
    expose: 'export',
    topRef: true,
    jsDoc: 'none',
  });
  return asLiveAnswers(generator.createSchema('*'));
}

function asLiveAnswers(node) {
  if (Array.isArray(node)) return node.map(asLiveAnswers);
  if (node === null || typeof node !== 'object') return node;
  const keys = Object.keys(node);
  if (keys.length === 2 && node.type === 'string' && node.format === 'date-time') return { sdkDate: true };
  const read = Object.fromEntries(keys.map(key => [key, asLiveAnswers(node[key])]));
  if (node.type === 'object' && node.properties) {
    const required = new Set(node.required ?? []);
    for (const [name, schema] of Object.entries(read.properties)) {
      if (!required.has(name)) read.properties[name] = { anyOf: [schema, { type: 'null' }] };
    }
  }
  return read;
}

function isSdkDate(_schema, data) {
  if (data instanceof Date && !Number.isNaN(data.getTime())) return true;
  isSdkDate.errors = [
    {
      keyword: 'sdkDate',
      message: `must be a Date (the SDK makes one only of a "YYYY-MM-DDTHH:mm:ss.sssZ" string), got ${JSON.stringify(data)}`,
      params: {},
    },
  ];
  return false;
}

const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true });
ajv.addKeyword({ keyword: 'sdkDate', validate: isSdkDate, errors: true });
ajv.addSchema(sdkSchemas(), 'sdk');

/** Notes a failure of the current call unless `value` fits the type `name` of sdk-types.ts, and
 * goes on: the value, so that calls after it still run on what it gave. */
function check(name, value) {
  const validate = ajv.getSchema(`sdk#/definitions/${name}`);
  if (!validate(value)) problems.push(`not a ${name}: ${describe(validate.errors)}`);
  return value;
}

/** ajv's errors, made readable: for a union, the errors of the members the value plainly is not
 * (another `event`, null where an object is) are left out, and so is the union's own summary. */
function describe(errors) {
  const otherEvents = new Set(errors.filter(isAboutTheEvent).map(branchOf).filter(Boolean));
  const kept = errors.filter(
    error => error.keyword !== 'anyOf' && !otherEvents.has(branchOf(error)) && !isTheOtherMember(error, errors),
  );
  // The same error in every element of a list is told once, as /results/*/..., with the first value.
  const byPlace = new Map();
  for (const error of kept.length ? kept : errors) {
    const path = error.instancePath.replace(/\/\d+(?=\/|$)/g, '/*') || '/';
    const key = `${path} ${error.keyword} ${JSON.stringify(error.params)}`;
    if (!byPlace.has(key)) byPlace.set(key, `${path} ${error.message}`);
  }
  const lines = [...new Set(byPlace.values())];
  return lines.slice(0, 6).join('; ') + (lines.length > 6 ? `; ... (${lines.length - 6} more)` : '');
}

/** An error of a union member that expects another `event`: the value is plainly not that one. */
function isAboutTheEvent(error) {
  return ['const', 'enum'].includes(error.keyword) && error.instancePath.endsWith('/event');
}

/** "must be null" and the like, where errors inside the value show it was meant as the other member. */
function isTheOtherMember(error, errors) {
  return (
    error.keyword === 'type' &&
    errors.some(
      other =>
        other !== error &&
        !['type', 'anyOf'].includes(other.keyword) &&
        other.instancePath.startsWith(error.instancePath),
    )
  );
}

function branchOf(error) {
  return error.schemaPath.match(/^(.*\/anyOf\/\d+)\//)?.[1];
}

/** Notes a failure of the current call unless `condition`, and goes on. */
function want(condition, message) {
  if (!condition) problems.push(message);
}

// Calls -----------------------------------------------------------------------------------------

const failures = [];
let problems = []; // what `check` found wrong in the answers of the call running now

/** Runs one call and prints its line; its value (even when an answer had the wrong shape), or
 * undefined when it failed outright. A call that needs what an earlier one failed to give fails
 * too, saying so. */
async function call(name, body, ...needs) {
  if (needs.some(need => need === undefined || need === null)) {
    return fail(name, 'not run: an earlier call it depends on failed');
  }
  problems = [];
  let value;
  try {
    value = await body();
  } catch (error) {
    problems.push(reason(error));
  }
  if (problems.length) fail(name, [...new Set(problems)].join(' | '));
  else console.log(`ok ${name}`);
  return value;
}

function fail(name, why) {
  failures.push(name);
  console.log(`FAIL ${name}: ${why}`);
  return undefined;
}

/** The SDK rejects with Pluggy's error body, or with an Error of its own; a mutation answered with
 * any status but 200 rejects with the request's own body (baseApi.js), which has no `code`. */
function reason(error) {
  if (error instanceof Error) return error.message;
  const text = JSON.stringify(error).slice(0, 500);
  if (error && typeof error === 'object' && !('code' in error)) {
    return `rejected with its own request body ${text}: the answer's status was not 200`;
  }
  return `rejected with ${text}`;
}

/** Calls `read` until `done(answer)`, failing at the deadline with the last answer's status. */
async function pollUntil(read, done, what) {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const answer = await read();
    if (done(answer)) return answer;
    if (Date.now() > deadline) {
      throw new Error(`still not ${what} after ${DEADLINE_MS / 1000} s: ${JSON.stringify(answer).slice(0, 300)}`);
    }
    await new Promise(resolve => setTimeout(resolve, POLL_MS));
  }
}

/** POSTs to one of the stand-in's control routes (/sandbox/...: the user's side of a login, the
 * bank's and the connector's, which Pluggy's API has no routes for); its JSON answer. */
async function control(path, body = {}) {
  const response = await fetch(`${process.env.PLUGGY_API_URL}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`POST ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

async function rejectsWith(promise, status) {
  let value;
  try {
    value = await promise;
  } catch (error) {
    want(error?.code === status, `failed with ${reason(error)} instead of a ${status}`);
    return;
  }
  want(false, `resolved with ${JSON.stringify(value ?? null).slice(0, 200)} instead of failing with ${status}`);
}

// Webhook receiver ------------------------------------------------------------------------------

/** Collects what is posted to it: { path, headers, body } per delivery, bodies as JSON.parse reads
 * them (as a user's server would, without the SDK's Date reviver). */
async function startReceiver() {
  const deliveries = [];
  const server = http.createServer((request, response) => {
    let text = '';
    request.on('data', chunk => (text += chunk));
    request.on('end', () => {
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        body = { unparsable: text };
      }
      deliveries.push({ path: request.url, headers: request.headers, body });
      response.writeHead(200).end();
    });
  });
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, deliveries, close: () => server.close() };
}

// The run ---------------------------------------------------------------------------------------

async function main() {
  // BaseApi reads the API's address from PLUGGY_API_URL only (it ignores ClientParams.baseUrl).
  process.env.PLUGGY_API_URL = options['base-url'].replace(/\/$/, '');
  const client = new pluggy.PluggyClient({
    clientId: options['client-id'],
    clientSecret: options['client-secret'],
    baseUrl: process.env.PLUGGY_API_URL,
  });
  const receiver = await startReceiver();
  try {
    await authenticate(client);
    const webhook = await webhooks(client, receiver);
    await connectors(client);
    const itemId = await connectedItem(client, receiver);
    const accounts = await accountCalls(client, itemId);
    await transactionCalls(client, accounts);
    await productCalls(client, itemId, accounts);
    await connectTokens(client, itemId, receiver);
    await itemUpdate(client, itemId);
    const restated = await restate(itemId);
    const mfaItemId = await mfaItem(client);
    const openFinanceItemId = await openFinanceItem(client);
    const approvedItemId = await appApprovalItem(client);
    const failedItemId = await failedItem(client);
    const statuses = await connectorStatusChanges();
    await deletions(client, [itemId, mfaItemId]);
    const items = { itemId, mfaItemId, openFinanceItemId, approvedItemId, failedItemId };
    await deliveriesCheck(receiver, webhook, items, restated, statuses);
    await webhookDeletion(client, webhook);
  } finally {
    receiver.close();
  }
  console.log(failures.length ? `${failures.length} call(s) failed` : 'all calls ok');
  process.exit(failures.length ? 1 : 0);
}

async function authenticate(client) {
  await call('POST /auth (getApiKey)', async () => {
    // getApiKey is the SDK's own step before every call; it reads `exp` from the key as a JWT.
    const apiKey = await client.getApiKey();
    want(typeof apiKey === 'string', `apiKey is ${JSON.stringify(apiKey)}`);
    const payload = JSON.parse(Buffer.from(apiKey.split('.')[1] ?? '', 'base64url').toString() || 'null');
    want(payload && payload.exp > Date.now() / 1000, `apiKey is not a JWT with a future exp: ${apiKey}`);
  });
}

async function webhooks(client, receiver) {
  const url = `${receiver.url}/all`;
  const headers = { 'X-Conformance': 'node' };
  const webhook = await call('createWebhook all', async () => {
    const created = check('WebhookAnswer', await client.createWebhook('all', url, headers));
    want(created.event === 'all' && created.url === url, `created ${JSON.stringify(created)}`);
    want(created.disabledAt === null, 'a new webhook has disabledAt null');
    return created;
  });
  await call('createWebhook duplicate (event, url) answers 400', () =>
    rejectsWith(client.createWebhook('all', url), 400),
  );
  await call(
    'fetchWebhooks',
    async () => {
      const page = check('WebhookPage', await client.fetchWebhooks());
      want(page.results.some(each => each.id === webhook.id), 'the new webhook is not listed');
    },
    webhook,
  );
  await call(
    'fetchWebhook',
    async () => want(check('WebhookAnswer', await client.fetchWebhook(webhook.id)).id === webhook.id, 'other id'),
    webhook,
  );
  await call(
    'updateWebhook disabled',
    async () => {
      const updated = check('WebhookAnswer', await client.updateWebhook(webhook.id, { enabled: false }));
      want(updated.disabledAt instanceof Date, `disabledAt is ${updated.disabledAt} after enabled: false`);
    },
    webhook,
  );
  await call(
    'updateWebhook enabled, url and headers',
    async () => {
      const moved = `${receiver.url}/all-moved`;
      const updated = check(
        'WebhookAnswer',
        await client.updateWebhook(webhook.id, { enabled: true, url: moved, headers }),
      );
      want(updated.disabledAt === null, `disabledAt is ${updated.disabledAt} after enabled: true`);
      want(updated.url === moved, `url is ${updated.url}`);
      webhook.url = moved;
    },
    webhook,
  );
  return webhook;
}

async function webhookDeletion(client, webhook) {
  await call(
    'deleteWebhook',
    async () => {
      await client.deleteWebhook(webhook.id);
      await rejectsWith(client.fetchWebhook(webhook.id), 404);
    },
    webhook,
  );
}

async function connectors(client) {
  await call('fetchConnectors', async () => check('ConnectorPage', await client.fetchConnectors()));
  await call('fetchConnectors sandbox', async () => {
    const page = check('ConnectorPage', await client.fetchConnectors({ sandbox: true }));
    const ids = page.results.map(each => each.id);
    want(ids.includes(SANDBOX_CONNECTOR) && ids.includes(MFA_CONNECTOR), `sandbox connectors listed: ${ids}`);
  });
  await call('fetchConnectors with filters', async () => {
    const filters = { sandbox: true, countries: ['BR'], types: ['PERSONAL_BANK'], name: 'Pluggy' };
    const page = check('ConnectorPage', await client.fetchConnectors(filters));
    for (const connector of page.results) {
      want(connector.type === 'PERSONAL_BANK', `connector ${connector.id} is ${connector.type}`);
    }
  });
  await call('fetchConnector', async () => {
    const connector = check('ConnectorAnswer', await client.fetchConnector(SANDBOX_CONNECTOR));
    want(connector.id === SANDBOX_CONNECTOR, `id ${connector.id}`);
  });
  await call('validateParameters valid', async () => {
    const result = check('ValidationAnswer', await client.validateParameters(SANDBOX_CONNECTOR, GOOD_CREDENTIALS));
    want(result.errors.length === 0, `errors: ${JSON.stringify(result.errors)}`);
  });
  await call('validateParameters missing password', async () => {
    const result = check('ValidationAnswer', await client.validateParameters(SANDBOX_CONNECTOR, { user: 'user-ok' }));
    want(
      result.errors.some(error => error.parameter === 'password'),
      `errors: ${JSON.stringify(result.errors)}`,
    );
  });
}

async function waitForItem(client, id, statuses) {
  const item = await pollUntil(
    async () => check('ItemAnswer', await client.fetchItem(id)),
    answer => statuses.includes(answer.status) && answer.executionStatus !== 'CREATED',
    statuses.join(' or '),
  );
  return item;
}

async function connectedItem(client, receiver) {
  const item = await call('createItem', async () => {
    const created = check(
      'ItemAnswer',
      await client.createItem(SANDBOX_CONNECTOR, GOOD_CREDENTIALS, {
        webhookUrl: `${receiver.url}/item`,
        clientUserId: 'conformance-node',
      }),
    );
    want(created.connector.id === SANDBOX_CONNECTOR, `connector ${created.connector.id}`);
    want(created.webhookUrl === `${receiver.url}/item`, `webhookUrl ${created.webhookUrl}`);
    return created;
  });
  return call(
    'fetchItem until finished',
    async () => {
      const finished = await waitForItem(client, item.id, FINISHED);
      want(finished.status === 'UPDATED', `status ${finished.status}, error ${JSON.stringify(finished.error)}`);
      want(finished.executionStatus === 'SUCCESS', `executionStatus ${finished.executionStatus}`);
      want(finished.lastUpdatedAt instanceof Date, 'lastUpdatedAt is not set once UPDATED');
      return finished.id;
    },
    item,
  );
}

async function accountCalls(client, itemId) {
  const accounts = await call(
    'fetchAccounts',
    async () => {
      const page = check('AccountPage', await client.fetchAccounts(itemId));
      want(page.results.every(account => account.itemId === itemId), 'an account of another item');
      want(page.results.some(account => account.type === 'BANK'), 'no BANK account');
      want(page.results.some(account => account.type === 'CREDIT'), 'no CREDIT account');
      return page.results;
    },
    itemId,
  );
  await call(
    'fetchAccounts type CREDIT',
    async () => {
      const page = check('AccountPage', await client.fetchAccounts(itemId, 'CREDIT'));
      want(page.results.length > 0, 'none');
      want(page.results.every(account => account.type === 'CREDIT'), 'an account of another type');
    },
    itemId,
  );
  for (const type of ACCOUNT_TYPES) {
    const account = accounts?.find(each => each.type === type);
    await call(
      `fetchAccount ${type}`,
      async () => {
        const answer = check('AccountAnswer', await client.fetchAccount(account.id));
        want(answer.id === account.id, `id ${answer.id}`);
      },
      account,
    );
    await call(
      `fetchAccountStatements ${type}`,
      async () => {
        const page = check('AccountStatementPage', await client.fetchAccountStatements(account.id));
        want(page.results.length > 0, 'no statements');
      },
      account,
    );
  }
  return accounts;
}

/** Every transaction route, on a bank account and on a card (whose rows carry creditCardMetadata);
 * then the categories, on the bank account's first row. */
async function transactionCalls(client, accounts) {
  let first;
  for (const type of ACCOUNT_TYPES) {
    const listed = await accountTransactionCalls(client, accounts?.find(each => each.type === type), type);
    first = first ?? listed?.[0];
  }
  await categoryCalls(client, first);
}

async function accountTransactionCalls(client, account, type) {
  await call(
    `fetchTransactionsCursor ${type}`,
    async () => {
      const page = check('TransactionCursorPage', await client.fetchTransactionsCursor(account.id));
      if (page.next !== null) {
        want(new URL(page.next, 'http://x').searchParams.get('after'), `next without after: ${page.next}`);
      }
    },
    account,
  );
  // What the others are compared with: GET /v2/transactions, the route the service reads.
  const listed = await call(
    `fetchAllTransactions (cursor pages) ${type}`,
    async () => {
      const all = check('TransactionList', await client.fetchAllTransactions(account.id));
      want(all.length > 5, `only ${all.length} transactions: paging not exercised`);
      want(new Set(all.map(each => each.id)).size === all.length, 'a transaction on two pages');
      want(all.every(each => each.accountId === account.id), 'a transaction of another account');
      return all;
    },
    account,
  );
  const range = listed && dateRange(listed);
  await call(
    `fetchAllTransactions dateFrom/dateTo ${type}`,
    async () => {
      const filters = { dateFrom: range.from, dateTo: range.to };
      const all = check('TransactionList', await client.fetchAllTransactions(account.id, filters));
      const expected = listed.filter(each => within(each.date, range)).map(each => each.id);
      want(sameIds(all, expected), `${all.length} transactions, ${expected.length} expected`);
    },
    range,
  );
  const ids = listed?.slice(1, 4).map(each => each.id);
  await call(
    `fetchTransactionsCursor ids ${type}`,
    async () => {
      const page = check('TransactionCursorPage', await client.fetchTransactionsCursor(account.id, { ids }));
      want(sameIds(page.results, ids), `got ${page.results.map(each => each.id)}, asked ${ids}`);
    },
    ids,
  );
  await call(
    `fetchTransactions (every page) ${type}`,
    async () => {
      const first = check('TransactionPage', await client.fetchTransactions(account.id, { pageSize: 5 }));
      const all = [...first.results];
      for (let page = 2; page <= first.totalPages; page++) {
        const next = check('TransactionPage', await client.fetchTransactions(account.id, { pageSize: 5, page }));
        want(next.page === page, `asked for page ${page}, got ${next.page}`);
        all.push(...next.results);
      }
      want(all.length === first.total, `${all.length} transactions over the pages, total says ${first.total}`);
      want(sameIds(all, listed.map(each => each.id)), `${all.length} transactions, /v2/transactions has ${listed.length}`);
    },
    listed,
  );
  await call(
    `fetchTransactions from/to ${type}`,
    async () => {
      const page = check('TransactionPage', await client.fetchTransactions(account.id, { ...range, pageSize: 500 }));
      const expected = listed.filter(each => within(each.date, range)).map(each => each.id);
      want(sameIds(page.results, expected), `${page.results.length} results, ${expected.length} expected`);
    },
    range,
  );
  await call(
    `fetchTransactions ids ${type}`,
    async () => {
      const page = check('TransactionPage', await client.fetchTransactions(account.id, { ids }));
      want(sameIds(page.results, ids), `got ${page.results.map(each => each.id)}, asked ${ids}`);
    },
    ids,
  );
  const transaction = listed?.[0];
  await call(
    `fetchTransaction ${type}`,
    async () => {
      const answer = check('TransactionAnswer', await client.fetchTransaction(transaction.id));
      want(answer.id === transaction.id, `id ${answer.id}`);
    },
    transaction,
  );
  // The service's incremental read: the rows created since an instant (transactions/created).
  const createdAt = listed && [...listed].map(each => each.createdAt).sort((a, b) => a - b)[Math.floor(listed.length / 2)];
  await call(
    `fetchAllTransactions createdAtFrom ${type}`,
    async () => {
      const since = createdAt.toISOString();
      const all = check('TransactionList', await client.fetchAllTransactions(account.id, { createdAtFrom: since }));
      const expected = listed.filter(each => each.createdAt >= createdAt).map(each => each.id);
      want(sameIds(all, expected), `${all.length} transactions, ${expected.length} expected`);
    },
    createdAt,
  );
  return listed;
}

async function categoryCalls(client, transaction) {
  const categories = await call('fetchCategories', async () => {
    const page = check('CategoryPage', await client.fetchCategories());
    want(page.results.length > 0, 'no categories');
    return page.results;
  });
  const category = categories?.find(each => each.id !== transaction?.categoryId);
  await call(
    'fetchCategory',
    async () => want(check('CategoryAnswer', await client.fetchCategory(category.id)).id === category.id, 'id'),
    category,
  );
  await call(
    'updateTransactionCategory',
    async () => {
      const updated = check('TransactionAnswer', await client.updateTransactionCategory(transaction.id, category.id));
      want(updated.categoryId === category.id, `categoryId ${updated.categoryId}, sent ${category.id}`);
      const read = check('TransactionAnswer', await client.fetchTransaction(transaction.id));
      want(read.categoryId === category.id, `read back categoryId ${read.categoryId}`);
    },
    transaction,
    category,
  );
}

function dateRange(transactions) {
  const days = transactions.map(each => isoDay(each.date)).sort();
  // The middle half of the days, so that the filter leaves some out on both sides.
  return { from: days[Math.floor(days.length / 4)], to: days[Math.floor((days.length * 3) / 4)] };
}

function isoDay(date) {
  return (date instanceof Date ? date.toISOString() : String(date)).slice(0, 10);
}

function within(date, { from, to }) {
  const day = isoDay(date);
  return from <= day && day <= to;
}

function sameIds(results, ids) {
  const got = results.map(each => each.id).sort();
  const wanted = [...ids].sort();
  return got.length === wanted.length && got.every((id, index) => id === wanted[index]);
}

async function productCalls(client, itemId, accounts) {
  const credit = accounts?.find(each => each.type === 'CREDIT');
  const bills = await call(
    'fetchCreditCardBills',
    async () => {
      const page = check('BillPage', await client.fetchCreditCardBills(credit.id));
      want(page.results.length > 0, 'the credit card has no bills');
      return page.results;
    },
    credit,
  );
  await call(
    'fetchCreditCardBill',
    async () => want(check('BillAnswer', await client.fetchCreditCardBill(bills[0].id)).id === bills[0].id, 'id'),
    bills?.[0],
  );

  const identity = await call(
    'fetchIdentityByItemId',
    async () => {
      const answer = check('IdentityAnswer', await client.fetchIdentityByItemId(itemId));
      want(answer.itemId === itemId, `itemId ${answer.itemId}`);
      return answer;
    },
    itemId,
  );
  await call(
    'fetchIdentity',
    async () => want(check('IdentityAnswer', await client.fetchIdentity(identity.id)).id === identity.id, 'id'),
    identity,
  );

  const investments = await call(
    'fetchInvestments',
    async () => {
      const page = check('InvestmentPage', await client.fetchInvestments(itemId));
      want(page.results.length > 0, 'no investments');
      return page.results;
    },
    itemId,
  );
  const investment = investments?.[0];
  await call(
    'fetchInvestments type',
    async () => {
      const page = check('InvestmentPage', await client.fetchInvestments(itemId, investment.type));
      want(page.results.every(each => each.type === investment.type), 'an investment of another type');
    },
    investment,
  );
  await call(
    'fetchInvestment',
    async () => want(check('InvestmentAnswer', await client.fetchInvestment(investment.id)).id === investment.id, 'id'),
    investment,
  );
  await call(
    'fetchInvestmentTransactions',
    async () => check('InvestmentTransactionPage', await client.fetchInvestmentTransactions(investment.id)),
    investment,
  );
  await call(
    'fetchAllInvestmentTransactions',
    async () => check('InvestmentTransactionList', await client.fetchAllInvestmentTransactions(investment.id)),
    investment,
  );

  const loans = await call(
    'fetchLoans',
    async () => {
      const page = check('LoanPage', await client.fetchLoans(itemId));
      want(page.results.length > 0, 'no loans');
      return page.results;
    },
    itemId,
  );
  await call(
    'fetchLoan',
    async () => want(check('LoanAnswer', await client.fetchLoan(loans[0].id)).id === loans[0].id, 'id'),
    loans?.[0],
  );
}

async function connectTokens(client, itemId, receiver) {
  await call('createConnectToken', async () => {
    const token = check('ConnectTokenAnswer', await client.createConnectToken());
    want(token.accessToken.length > 0, 'empty accessToken');
  });
  await call(
    'createConnectToken for an item, with options',
    async () =>
      check(
        'ConnectTokenAnswer',
        await client.createConnectToken(itemId, {
          webhookUrl: `${receiver.url}/item`,
          clientUserId: 'conformance-node',
          oauthRedirectUri: `${receiver.url}/oauth-done`,
          avoidDuplicates: true,
          // Not in the SDK's ConnectTokenOptions, but sent as given: Pluggy's connect token takes it.
          products: ['ACCOUNTS', 'TRANSACTIONS', 'CREDIT_CARDS'],
        }),
      ),
    itemId,
  );
}

/** The bank re-reports the item's latest rows and posts the pending ones: transactions/deleted,
 * created and updated. */
async function restate(itemId) {
  return call(
    'restate (control route): transactions deleted, created and updated',
    async () => {
      const changes = await control(`/sandbox/items/${itemId}/restate`, { delete: 1, post_pending: true });
      for (const kind of ['deleted', 'created', 'updated']) want(changes[kind].length > 0, `nothing ${kind}`);
      return changes;
    },
    itemId,
  );
}

async function openFinanceItem(client) {
  const item = await call('createItem Open Finance connector', async () =>
    check('ItemAnswer', await client.createItem(OPEN_FINANCE_CONNECTOR, CPF)),
  );
  const waiting = await call(
    'fetchItem until WAITING_USER_INPUT for OAuth',
    async () => {
      const answer = await waitForItem(client, item.id, ['WAITING_USER_INPUT', ...FINISHED]);
      want(answer.status === 'WAITING_USER_INPUT', `status ${answer.status}`);
      want(answer.parameter?.name === 'oauthCode', `parameter ${JSON.stringify(answer.parameter)}`);
      want(String(answer.parameter?.data).includes(`/sandbox/oauth/${item.id}`), `data ${answer.parameter?.data}`);
      return answer;
    },
    item,
  );
  const itemId = await call(
    'OAuth URL opened and fetchItem until finished',
    async () => {
      const response = await fetch(waiting.parameter.data);
      want(response.ok, `opening the OAuth URL answered ${response.status}`);
      const finished = await waitForItem(client, item.id, FINISHED);
      want(finished.status === 'UPDATED', `status ${finished.status}, error ${JSON.stringify(finished.error)}`);
      return finished.id;
    },
    waiting,
  );
  const consents = await call(
    'fetchConsents',
    async () => {
      const page = check('ConsentPage', await client.fetchConsents(itemId));
      want(page.results.length > 0, 'no consent');
      want(page.results.every(each => each.itemId === itemId), 'a consent of another item');
      return page.results;
    },
    itemId,
  );
  await call(
    'fetchConsent',
    async () => want(check('ConsentAnswer', await client.fetchConsent(consents[0].id)).id === consents[0].id, 'id'),
    consents?.[0],
  );
  return itemId;
}

async function appApprovalItem(client) {
  const item = await call('createItem asking for an approval in the app', async () =>
    check('ItemAnswer', await client.createItem(SANDBOX_CONNECTOR, APP_APPROVAL_CREDENTIALS)),
  );
  const waiting = await call(
    'fetchItem until WAITING_USER_ACTION',
    async () => {
      const answer = await waitForItem(client, item.id, ['WAITING_USER_ACTION', ...FINISHED]);
      want(answer.status === 'WAITING_USER_ACTION', `status ${answer.status}`);
      want(answer.userAction?.type === 'authorize-access', `userAction ${JSON.stringify(answer.userAction)}`);
      return answer;
    },
    item,
  );
  return call(
    'approved in the app (control route) and fetchItem until finished',
    async () => {
      await control(`/sandbox/items/${item.id}/authorize`);
      const finished = await waitForItem(client, item.id, FINISHED);
      want(finished.status === 'UPDATED', `status ${finished.status}, error ${JSON.stringify(finished.error)}`);
      return finished.id;
    },
    waiting,
  );
}

async function failedItem(client) {
  const item = await call('createItem with a locked account', async () =>
    check('ItemAnswer', await client.createItem(SANDBOX_CONNECTOR, LOCKED_CREDENTIALS)),
  );
  return call(
    'fetchItem until LOGIN_ERROR',
    async () => {
      const failed = await waitForItem(client, item.id, FINISHED);
      want(failed.status === 'LOGIN_ERROR', `status ${failed.status}`);
      want(failed.error?.code === 'ACCOUNT_LOCKED', `error ${JSON.stringify(failed.error)}`);
      return failed.id;
    },
    item,
  );
}

/** A connector goes UNSTABLE and back ONLINE: connector/status_updated twice. */
async function connectorStatusChanges() {
  return call('connector status changes (control route)', async () => {
    const path = `/sandbox/connectors/${PERSONAL_CONNECTOR}/status`;
    return [await control(path, { status: 'UNSTABLE' }), await control(path, { status: 'ONLINE' })];
  });
}

async function itemUpdate(client, itemId) {
  await call(
    'updateItem (PATCH) and fetchItem until finished',
    async () => {
      const before = check('ItemAnswer', await client.fetchItem(itemId));
      const updated = check('ItemAnswer', await client.updateItem(itemId, GOOD_CREDENTIALS));
      want(updated.id === itemId, `id ${updated.id}`);
      const finished = await pollUntil(
        async () => check('ItemAnswer', await client.fetchItem(itemId)),
        answer => answer.status === 'UPDATED' && answer.lastUpdatedAt > before.lastUpdatedAt,
        'UPDATED again',
      );
      want(finished.executionStatus === 'SUCCESS', `executionStatus ${finished.executionStatus}`);
    },
    itemId,
  );
}

async function mfaItem(client) {
  const item = await call('createItem MFA connector', async () =>
    check('ItemAnswer', await client.createItem(MFA_CONNECTOR, GOOD_CREDENTIALS)),
  );
  const waiting = await call(
    'fetchItem until WAITING_USER_INPUT',
    async () => {
      const answer = await waitForItem(client, item.id, ['WAITING_USER_INPUT', ...FINISHED]);
      want(answer.status === 'WAITING_USER_INPUT', `status ${answer.status}`);
      want(answer.parameter?.name === 'token', `parameter ${JSON.stringify(answer.parameter)}`);
      return answer;
    },
    item,
  );
  return call(
    'updateItemMFA and fetchItem until finished',
    async () => {
      check('ItemAnswer', await client.updateItemMFA(item.id, { token: MFA_TOKEN }));
      const finished = await waitForItem(client, item.id, FINISHED);
      want(finished.status === 'UPDATED', `status ${finished.status}, error ${JSON.stringify(finished.error)}`);
      return finished.id;
    },
    waiting,
  );
}

async function deletions(client, itemIds) {
  for (const [index, itemId] of itemIds.entries()) {
    await call(
      `deleteItem ${index + 1} and fetchItem answers 404`,
      async () => {
        await client.deleteItem(itemId);
        await rejectsWith(client.fetchItem(itemId), 404);
      },
      itemId,
    );
  }
}

/** Every kind of event the stand-in sends must have come, each delivery a WebhookEventPayload. */
async function deliveriesCheck(receiver, webhook, items, restated, statuses) {
  const { itemId, mfaItemId, openFinanceItemId, approvedItemId, failedItemId } = items;
  const allPath = new URL(webhook?.url ?? 'http://unused/all-moved').pathname;
  // The "all" subscription hears every item and connector; the first item's webhookUrl hears that
  // item's events.
  const expected = [
    ...['item/created', 'item/login_succeeded', 'item/updated', 'item/deleted'].flatMap(event => [
      [allPath, event, itemId],
      ['/item', event, itemId],
    ]),
    ...['transactions/created', 'transactions/deleted', 'transactions/updated'].map(event => [allPath, event, itemId]),
    ...['item/waiting_user_input', 'item/created', 'item/deleted'].map(event => [allPath, event, mfaItemId]),
    [allPath, 'item/waiting_user_input', openFinanceItemId],
    [allPath, 'item/waiting_user_action', approvedItemId],
    [allPath, 'item/error', failedItemId],
    [allPath, 'connector/status_updated', String(PERSONAL_CONNECTOR)],
  ].filter(([path]) => webhook || path === '/item');
  const arrived = ([path, event, id]) =>
    receiver.deliveries.some(
      each => each.path === path && each.body.event === event && (each.body.itemId ?? each.body.id) === id,
    );
  await call(
    'webhook deliveries of every kind arrive',
    () =>
      pollUntil(
        () => expected.filter(triple => !arrived(triple)).map(triple => triple.join(' ')),
        missing => missing.length === 0,
        'delivered (missing: path, event, item or connector)',
      ),
    itemId,
    mfaItemId,
    openFinanceItemId,
    approvedItemId,
    failedItemId,
    restated,
    statuses,
  );
  await call(
    'webhook deliveries carry the webhook headers',
    async () => {
      const posted = receiver.deliveries.filter(each => each.path === allPath);
      want(posted.length > 0, 'nothing was posted to the "all" webhook');
      want(posted.every(each => each.headers['x-conformance'] === 'node'), 'a delivery without X-Conformance');
    },
    webhook,
  );
  const byEvent = new Map();
  for (const delivery of receiver.deliveries) {
    const event = delivery.body.event;
    byEvent.set(event, [...(byEvent.get(event) ?? []), delivery]);
  }
  for (const [event, deliveries] of byEvent) {
    await call(`webhook delivery ${event} (${deliveries.length})`, async () => {
      for (const delivery of deliveries) check('WebhookDelivery', delivery.body);
    });
  }
}

main().catch(error => {
  console.log(`FAIL the runner itself: ${error?.stack ?? error}`);
  process.exit(1);
});
