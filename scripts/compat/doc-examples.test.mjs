// scripts/doc-examples, the runner of docs/API_REFERENCE.md's examples: its
// matching rules, and a whole run against a stand-in server, where a wrong
// documented response must fail naming the example.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import http from 'node:http'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const runner = fileURLToPath(new URL('../doc-examples', import.meta.url))
const { MORE, parseBlocks, plan, parseDocumentedJSON, match, checkResponse } = createRequire(import.meta.url)(runner)

const problems = (documented, actual) => {
  const out = []
  match(documented, actual, '', out)
  return out
}

test('a bare … is "more"; inside a string it is text', () => {
  assert.deepEqual(parseDocumentedJSON('{ "a": "x…", "b": [1, …], … }'), { a: 'x…', b: [1, MORE], [MORE]: true })
  assert.deepEqual(parseDocumentedJSON('{ "q": "say \\"…\\"" }'), { q: 'say "…"' })
})

test('objects: documented fields must match, undocumented ones fail unless … allows them', () => {
  assert.deepEqual(problems({ a: 1 }, { a: 1 }), [])
  assert.deepEqual(problems({ data: { a: 1 } }, { data: { a: 2 } }), ['data.a: 2, documented 1'])
  assert.deepEqual(problems({ a: 1, b: 2 }, { a: 1 }), ['b: missing'])
  assert.deepEqual(problems({ a: 1 }, { a: 1, extra: true }), ['extra: in the response (true) but not documented'])
  assert.deepEqual(problems({ a: 1, [MORE]: true }, { a: 1, extra: true }), [])
  assert.deepEqual(problems({ a: '…' }, { a: [1, 2] }), [])
  assert.deepEqual(problems({ a: '…' }, {}), ['a: missing'])
})

test('arrays: exactly the elements shown, or at least them with …', () => {
  assert.deepEqual(problems({ l: [1, 2] }, { l: [1, 2] }), [])
  assert.deepEqual(problems({ l: [1] }, { l: [1, 2] }), ['l: 2 elements, documented 1'])
  assert.deepEqual(problems({ l: [1, MORE] }, { l: [1, 2] }), [])
  assert.deepEqual(problems({ l: [1, MORE] }, { l: [] }), ['l: 0 elements, documented 1 or more'])
  assert.deepEqual(problems({ l: [{ a: 1 }] }, { l: [{ a: 3 }] }), ['l[0].a: 3, documented 1'])
})

test('generated values are checked by form, and null means null', () => {
  assert.deepEqual(problems({ room_id: 'abc123def4' }, { room_id: 'k3v9q2m7xa' }), [])
  assert.deepEqual(problems({ room_id: 'abc123def4' }, { room_id: 'ABC' }), ['room_id: "ABC" is not a room id'])
  assert.deepEqual(problems({ parent_id: null }, { parent_id: '4f6c1e0a-7d3b-4c59-9a55-2f0f3c1d8e21' }),
    ['parent_id: "4f6c1e0a-7d3b-4c59-9a55-2f0f3c1d8e21", documented null'])
  assert.deepEqual(problems({ created_at: '2026-11-26T19:00:00Z' }, { created_at: '2026-11-26T20:01:02.123456Z' }), [])
  assert.deepEqual(problems({ created_at: '2026-11-26T19:00:00Z' }, { created_at: 'yesterday' }),
    ['created_at: "yesterday" is not an RFC 3339 timestamp'])
  assert.deepEqual(problems({ server_time: 1795000000123 }, { server_time: 1.5 }), ['server_time: 1.5 is not a time in ms since the epoch'])
  assert.deepEqual(problems({ execute_at: 0 }, { execute_at: 1795000000123 }),
    ['execute_at: the documented sample 0 is not a time in ms since the epoch'])
  // A name that is not generated is compared by value.
  assert.deepEqual(problems({ username: 'AnimeFan99' }, { username: 'Someone' }), ['username: "Someone", documented "AnimeFan99"'])
})

test('status and listed headers are checked', () => {
  const doc = { status: 429, headers: [['retry-after', '900'], ['allow', 'POST, OPTIONS']], body: undefined }
  assert.deepEqual(checkResponse(doc, { status: 429, headers: { 'retry-after': '12', allow: 'POST, OPTIONS' }, body: '' }), [])
  assert.deepEqual(checkResponse(doc, { status: 200, headers: { 'retry-after': 'soon' }, body: '' }), [
    'status 200, documented 429',
    'header retry-after: "soon", documented "900"',
    'header allow: missing',
  ])
})

test('the plan: every example needs a response block in its section; names are unique', () => {
  const md = (s) => plan(parseBlocks(s.replaceAll("'''", '```')), 'x.md')
  assert.throws(() => md("## A\n'''sh example=one\ncurl x\n'''\n"), /x.md:2: example one has no response block after it/)
  assert.throws(() => md("## A\n'''sh example=one\ncurl x\n'''\n## B\n'''http response\nHTTP/1.1 200 OK\n'''\n"),
    /example one has no response block in its section "A"/)
  assert.throws(() => md("'''http response\nHTTP/1.1 200 OK\n'''\n"), /x.md:1: a response block with no example before it/)
  assert.throws(() => md("'''sh example=a\n'''\n'''js example=a\n'''\n'''http response\nHTTP/1.1 200 OK\n'''\n"), /a second example named a/)
  const p = md("  '''sh example=indented\n  curl x\n  '''\n  '''http response save=ID:data.id\n  HTTP/1.1 201 Created\n  '''\n'''json\n{}\n'''\n")
  assert.equal(p.steps.length, 1)
  assert.equal(p.steps[0].examples[0].code, 'curl x')
  assert.deepEqual(p.steps[0].response.saves, [{ variable: 'ID', path: 'data.id' }])
})

// run executes the runner on a markdown text against url.
function run (markdown, url) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'doc-examples-test-'))
  const file = path.join(dir, 'REF.md')
  fs.writeFileSync(file, markdown)
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [runner, file], { env: { ...process.env, SUPABASE_URL: url } })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { out += d })
    child.on('close', (code) => {
      fs.rmSync(dir, { recursive: true, force: true })
      resolve({ code, out })
    })
  })
}

test('a run: curl and supabase-js examples pass, saved values reach later ones, a wrong response fails by name', async (t) => {
  const id = '4f6c1e0a-7d3b-4c59-9a55-2f0f3c1d8e21'
  const server = http.createServer((req, res) => {
    const q = new URL(req.url, 'http://x').searchParams.get('id')
    res.writeHead(201, { 'Content-Type': 'application/json', 'X-Thing': 'yes' })
    res.end(JSON.stringify({ success: true, data: { id, n: 1, q } }))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  const url = `http://127.0.0.1:${server.address().port}`

  const reference = (n) => `# Reference
'''js setup
import { createClient } from '@supabase/supabase-js'
const supabase = createClient(process.env.SUPABASE_URL, process.env.SUPABASE_ANON_KEY)
'''
### echo
'''sh example=echo-curl
curl -s "$SUPABASE_URL/functions/v1/echo" --json '{}'
'''
'''js example=echo-js
const { data, error } = await supabase.functions.invoke('echo', { body: {} })
if (error) throw error
'''
'''http response save=ID:data.id
HTTP/1.1 201 Created
X-Thing: yes

{ "success": true, "data": { "id": "…", "n": ${n}, "q": null } }
'''
'''sh example=uses-saved
curl -s "$SUPABASE_URL/functions/v1/echo?id=$ID"
'''
'''http response
HTTP/1.1 201 Created

{ "success": true, "data": { "q": "${id}", … } }
'''
`.replaceAll("'''", '```')

  const good = await run(reference(1), url)
  assert.equal(good.code, 0, good.out)
  assert.match(good.out, /^ok 1 - echo-curl \(sh, .*REF\.md:7\)$/m)
  assert.match(good.out, /^ok 2 - echo-js \(js, /m)
  assert.match(good.out, /^ok 3 - uses-saved /m)
  assert.match(good.out, /^doc examples: 3 passed \(2 sh, 1 js\), 0 failed$/m)

  const bad = await run(reference(2), url)
  assert.equal(bad.code, 1, bad.out)
  assert.match(bad.out, /^not ok 1 - echo-curl \(sh, .*REF\.md:7; documented response at .*REF\.md:14\)$/m)
  assert.match(bad.out, /^ {4}data\.n: 1, documented 2$/m)
  assert.match(bad.out, /^doc examples: 0 passed, 1 failed \(echo-curl\)$/m)

  const broken = await run(reference(1).replace("if (error) throw error", "throw new Error('boom')"), url)
  assert.equal(broken.code, 1, broken.out)
  assert.match(broken.out, /^not ok 2 - echo-js /m)
  assert.match(broken.out, /exited with 1/)
  assert.match(broken.out, /Error: boom/)
})
