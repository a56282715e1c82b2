// The mortgage example of the product brief (../shared/DESIGN.md, "Map/reduce
// indexes with output collections"), as index definitions any peer loads:
// the npm package registers them with `db.defineIndex(def)`.
//
// Events (collection "LoanEvents"):
//   { type: "approval", loan, month, amount }           a loan of `amount`
//   { type: "expected", loan, month, interest, principal } what is due for a month
//   { type: "payment",  loan, month, amount }           a payment for a month
//
// 1. `monthlyStatus` reduces them per [loan, month] into the output
//    collection "MonthlyStatus": what was due, what was paid, and how the
//    payments split (interest first, then principal), and the shortfall.
// 2. `loanStatus` reduces the monthly statuses per loan: principal repaid,
//    outstanding, and a past-due flag while any month is short. A late
//    catch-up payment for a month clears it.
//
// Amounts are whole currency units (integers), so the figures are exact.
// Both reduces keep sums (commutative, associative) and derive the rest
// from them, so combining partial results (`rereduce`) gives the same
// figures as combining entries.

const sum = (values, field) => values.reduce((a, v) => a + (v[field] ?? 0), 0);

export const monthlyStatus = {
  name: "mortgage/monthly-status",
  collections: ["LoanEvents"],
  output: "MonthlyStatus",
  map(e, emit) {
    const key = [e.loan, e.month];
    if (e.type === "approval") emit(key, { approved: e.amount });
    else if (e.type === "expected") emit(key, { interestDue: e.interest, principalDue: e.principal });
    else if (e.type === "payment") emit(key, { paid: e.amount });
  },
  reduce(key, values) {
    const approved = sum(values, "approved");
    const interestDue = sum(values, "interestDue");
    const principalDue = sum(values, "principalDue");
    const paid = sum(values, "paid");
    const interestPaid = Math.min(paid, interestDue);
    const principalPaid = Math.min(paid - interestPaid, principalDue);
    return {
      loan: key[0],
      month: key[1],
      approved,
      interestDue,
      principalDue,
      paid,
      interestPaid,
      principalPaid,
      short: interestDue + principalDue - interestPaid - principalPaid,
    };
  },
};

export const loanStatus = {
  name: "mortgage/loan-status",
  collections: ["MonthlyStatus"],
  map(m, emit) {
    emit(m.loan, {
      approved: m.approved,
      interestPaid: m.interestPaid,
      principalPaid: m.principalPaid,
      pastDueAmount: m.short,
    });
  },
  reduce(loan, values) {
    const approved = sum(values, "approved");
    const principalPaid = sum(values, "principalPaid");
    const pastDueAmount = sum(values, "pastDueAmount");
    return {
      approved,
      interestPaid: sum(values, "interestPaid"),
      principalPaid,
      outstanding: approved - principalPaid,
      pastDueAmount,
      pastDue: pastDueAmount > 0,
    };
  },
};

export default [monthlyStatus, loanStatus];

/**
 * A loan of 12,000 at 1 % a month, three months due, February paid short
 * (the tests of every peer use these events: loan status 2,390 repaid,
 * 610 past due), and the late payment that clears it.
 */
export const sampleEvents = [
  ["a1", { type: "approval", loan: "L1", month: "2026-01", amount: 12000 }],
  ["x1", { type: "expected", loan: "L1", month: "2026-01", interest: 120, principal: 1000 }],
  ["x2", { type: "expected", loan: "L1", month: "2026-02", interest: 110, principal: 1000 }],
  ["x3", { type: "expected", loan: "L1", month: "2026-03", interest: 100, principal: 1000 }],
  ["p1", { type: "payment", loan: "L1", month: "2026-01", amount: 1120 }],
  ["p2", { type: "payment", loan: "L1", month: "2026-02", amount: 500 }],
  ["p3", { type: "payment", loan: "L1", month: "2026-03", amount: 1100 }],
];
export const latePayment = ["p2b", { type: "payment", loan: "L1", month: "2026-02", amount: 610 }];
