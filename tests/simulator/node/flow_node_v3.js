// A whole Native flow through the unmodified Node SDK wechatpay-node-v3 against the scanpay
// simulator. The SDK hard-codes https://api.mch.weixin.qq.com; its documented hook
// pay.createHttp(service) swaps the HTTP service, and the one given here is the SDK's own
// PayRequest with only the origin changed. Run by tests/simulator/test_sdk_flows_node.py:
//   node flow_node_v3.js config.json
// config: {baseURL, mchid, appid, serial, privateKey (PEM), merchantCertificate (PEM),
//          apiv3Key, prefix}
// Prints one JSON object with what happened; exits non-zero on any failure.
'use strict';

const http = require('http');
const { readFileSync } = require('fs');
const WxPay = require('wechatpay-node-v3');
const { PayRequest } = require('wechatpay-node-v3/dist/lib/pay-request');

const WECHAT = 'https://api.mch.weixin.qq.com';
const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// the SDK's own HTTP service, with the origin pointed at the simulator
class SimulatorRequest extends PayRequest {
  post(url, params, headers) { return super.post(url.replace(WECHAT, cfg.baseURL), params, headers); }
  get(url, headers) { return super.get(url.replace(WECHAT, cfg.baseURL), headers); }
}

const pay = new WxPay({
  appid: cfg.appid,
  mchid: cfg.mchid,
  publicKey: Buffer.from(cfg.merchantCertificate), // apiclient_cert.pem: the SDK reads its serial
  privateKey: Buffer.from(cfg.privateKey),
  key: cfg.apiv3Key,
});
pay.createHttp(new SimulatorRequest());

// the merchant's notify_url: pay.verifySign (fetches /v3/certificates through the service the
// first time), then pay.decipher_gcm
const inbox = [];
const waiters = [];
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const h = req.headers;
    let ok = false;
    let resource = null;
    try {
      ok = await pay.verifySign({
        timestamp: h['wechatpay-timestamp'], nonce: h['wechatpay-nonce'], body,
        serial: h['wechatpay-serial'], signature: h['wechatpay-signature'], apiSecret: cfg.apiv3Key,
      });
      if (ok) {
        const { resource: r, event_type: event } = JSON.parse(body);
        resource = { event, ...pay.decipher_gcm(r.ciphertext, r.associated_data, r.nonce, cfg.apiv3Key) };
      }
    } catch (err) {
      resource = { error: err.message };
    }
    inbox.push({ ok, resource });
    res.writeHead(ok ? 204 : 401);
    res.end();
    while (waiters.length && waiters[0].count <= inbox.length) waiters.shift().resolve();
  });
});

function arrival(count) {
  if (inbox.length >= count) return Promise.resolve(inbox[count - 1]);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`notification ${count} did not arrive`)), 15000);
    waiters.push({ count, resolve: () => { clearTimeout(timer); resolve(inbox[count - 1]); } });
  });
}

function expect(answer, status, what) {
  if (answer.status !== status) {
    throw new Error(`${what}: HTTP ${answer.status} ${answer.error || JSON.stringify(answer.data)}`);
  }
  return answer;
}

async function main() {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const notifyUrl = `http://127.0.0.1:${server.address().port}/notify`;
  const out = { serial_no: pay.serial_no };
  const number = `${cfg.prefix}-1`;

  const prepay = expect(await pay.transactions_native({
    out_trade_no: number, description: 'Tieguanyin', notify_url: notifyUrl,
    amount: { total: 2600, currency: 'CNY' },
  }), 200, 'native prepay');
  out.code_url = prepay.data.code_url;

  const paid = await fetch(`${cfg.baseURL}/sim/pay`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ code_url: out.code_url }),
  }).then((r) => r.json());
  out.paid_transaction_id = paid.transaction_id;
  out.payment = await arrival(1);

  const query = expect(await pay.query({ out_trade_no: number }), 200, 'query');
  out.trade_state = query.data.trade_state;
  const byId = expect(await pay.query({ transaction_id: paid.transaction_id }), 200, 'query by id');
  out.query_by_id_out_trade_no = byId.data.out_trade_no;

  const refund = expect(await pay.refunds({
    out_trade_no: number, out_refund_no: `${number}-r`, notify_url: notifyUrl,
    amount: { refund: 600, total: 2600, currency: 'CNY' },
  }), 200, 'refund');
  out.refund_status = refund.data.status;
  out.refund = await arrival(2);
  const refundQuery = expect(await pay.find_refunds(`${number}-r`), 200, 'refund query');
  out.refund_query_status = refundQuery.data.status;

  const other = `${cfg.prefix}-2`;
  expect(await pay.transactions_native({
    out_trade_no: other, description: 'Tea', notify_url: notifyUrl, amount: { total: 1 },
  }), 200, 'second prepay');
  const closed = await pay.close(other);
  out.close_status = closed.status;
  const afterClose = expect(await pay.query({ out_trade_no: other }), 200, 'query closed');
  out.closed_trade_state = afterClose.data.trade_state;
  return out;
}

main()
  .then((out) => { console.log(JSON.stringify(out)); server.close(); })
  .catch((err) => {
    console.error(err.message);
    server.close();
    process.exit(1);
  });
