// A summary computed at the hub from documents an edge may not read (the
// product brief's doctor's laptop): visits (collection "Visits", ids
// `visits/…`) reduce per ward into a census, written as the documents
// `WardCensus/<ward>`. The index is `hubComputed`: only the hub runs it,
// and its output documents replicate to the edges whose read prefixes
// cover `wardcensus/`, where they are read-only. A ward manager's laptop
// granted `wardcensus/` sees how many inpatients each ward has and of what,
// never a visit.
//
// Visits: { patient, ward, diagnosis, discharged? }. A discharged patient
// leaves the census; a ward whose last patient leaves has no document.

export const wardCensus = {
  name: "clinic/ward-census",
  collections: ["Visits"],
  output: "WardCensus",
  hubComputed: true,
  map(v, emit) {
    if (typeof v.ward === "string" && !v.discharged) {
      emit(v.ward, { inpatients: 1, byDiagnosis: { [v.diagnosis ?? "unknown"]: 1 } });
    }
  },
  // Sums, so results combine like entries (rereduce).
  reduce(ward, values) {
    const out = { inpatients: 0, byDiagnosis: {} };
    for (const v of values) {
      out.inpatients += v.inpatients;
      for (const [d, n] of Object.entries(v.byDiagnosis)) {
        out.byDiagnosis[d] = (out.byDiagnosis[d] ?? 0) + n;
      }
    }
    return out;
  },
};

export default [wardCensus];
