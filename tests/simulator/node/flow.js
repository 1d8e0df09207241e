// A whole Native flow through the unmodified Node SDK wechatpay-axios-plugin, only its
// baseURL pointed at the scanpay simulator. Run by tests/simulator/test_sdk_flows_node.py:
//   node flow.js config.json
// config: {baseURL, mchid, appid, serial, privateKey (PEM), apiv3Key, secret, mode,
//          publicKeyId, publicKey (PEM), platformSerial, platformCertificate (PEM), prefix}
// Prints one JSON object with what happened; exits non-zero on any failure.
'use strict';

const http = require('http');
const { readFileSync } = require('fs');
const { Wechatpay, Rsa, Aes, Formatter } = require('wechatpay-axios-plugin');

const { AesGcm } = Aes;

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const certs = cfg.mode === 'public-key'
  ? { [cfg.publicKeyId]: cfg.publicKey }
  : { [cfg.platformSerial]: cfg.platformCertificate };

const wxpay = new Wechatpay({
  mchid: cfg.mchid,
  serial: cfg.serial,
  privateKey: cfg.privateKey,
  certs,
  secret: cfg.secret,
  baseURL: cfg.baseURL,
  // public-key mode: name the key, so answers come signed by it (as for any new merchant)
  ...(cfg.mode === 'public-key' ? { headers: { 'Wechatpay-Serial': cfg.publicKeyId } } : {}),
});

// the merchant's notify_url: verify with the configured key, then AES-256-GCM decrypt
const inbox = [];
const waiters = [];
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const h = req.headers;
    const key = certs[h['wechatpay-serial']];
    const ok = key !== undefined && Rsa.verify(
      Formatter.joinedByLineFeed(h['wechatpay-timestamp'], h['wechatpay-nonce'], body),
      h['wechatpay-signature'],
      Rsa.from(key, Rsa.KEY_TYPE_PUBLIC),
    );
    let resource = null;
    if (ok) {
      const { resource: r, event_type: event } = JSON.parse(body);
      resource = { event, ...JSON.parse(AesGcm.decrypt(r.ciphertext, cfg.apiv3Key, r.nonce, r.associated_data)) };
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

async function main() {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const notifyUrl = `http://127.0.0.1:${server.address().port}/notify`;
  const out = {};
  const number = `${cfg.prefix}-1`;

  const prepay = await wxpay.v3.pay.transactions.native.post({
    mchid: cfg.mchid, appid: cfg.appid, out_trade_no: number, description: 'Dahongpao',
    notify_url: notifyUrl, amount: { total: 1800, currency: 'CNY' },
  });
  out.code_url = prepay.data.code_url;

  const paid = await fetch(`${cfg.baseURL}/sim/pay`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ code_url: out.code_url }),
  }).then((r) => r.json());
  out.paid_transaction_id = paid.transaction_id;
  out.payment = await arrival(1);

  const query = await wxpay.v3.pay.transactions['out-trade-no']['{out_trade_no}'].get({
    params: { mchid: cfg.mchid }, out_trade_no: number,
  });
  out.trade_state = query.data.trade_state;

  const refund = await wxpay.v3.refund.domestic.refunds.post({
    out_trade_no: number, out_refund_no: `${number}-r`, notify_url: notifyUrl,
    amount: { refund: 800, total: 1800, currency: 'CNY' },
  });
  out.refund_status = refund.data.status;
  out.refund = await arrival(2);
  const refundQuery = await wxpay.v3.refund.domestic.refunds['{out_refund_no}'].get({
    out_refund_no: `${number}-r`,
  });
  out.refund_query_status = refundQuery.data.status;

  const other = `${cfg.prefix}-2`;
  await wxpay.v3.pay.transactions.native.post({
    mchid: cfg.mchid, appid: cfg.appid, out_trade_no: other, description: 'Tea',
    notify_url: notifyUrl, amount: { total: 1, currency: 'CNY' },
  });
  const closed = await wxpay.v3.pay.transactions['out-trade-no']['{out_trade_no}'].close.post(
    { mchid: cfg.mchid }, { out_trade_no: other },
  );
  out.close_status = closed.status;

  // API v2 through the same instance: XML, MD5-signed, the answer's sign checked by the SDK
  const v2 = await wxpay.v2.pay.orderquery.post({
    appid: cfg.appid, mch_id: cfg.mchid, out_trade_no: number,
  });
  out.v2_trade_state = v2.data.trade_state;
  return out;
}

main()
  .then((out) => { console.log(JSON.stringify(out)); server.close(); })
  .catch((err) => {
    const detail = err.response ? { status: err.response.status, data: err.response.data } : {};
    console.error(err.message, JSON.stringify(detail));
    server.close();
    process.exit(1);
  });
