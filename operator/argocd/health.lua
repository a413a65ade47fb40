-- Argo CD health check for the gen5nas.io kinds: SupernetTraining, NASSearch, SubnetExport.
-- All three write the same status conventions (gen5nas_operator.common.conditions), so one
-- script serves each: argocd-cm keys resource.customizations.health.gen5nas.io_<Kind>.
--   Degraded     phase Failed (the Ready message says why)
--   Healthy      phase Succeeded, or Ready=True for the current generation (pods running and,
--                for a NASSearch, the estimator serving)
--   Progressing  anything else: not reconciled yet, Waiting, Pending, or Running but not Ready
local hs = { status = "Progressing", message = "waiting for the gen5nas operator" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local st = obj.status
local generation = obj.metadata.generation
if generation ~= nil and (st.observedGeneration == nil or st.observedGeneration < generation) then
  hs.message = "the operator has not reconciled generation " .. generation .. " yet"
  return hs
end
local ready = nil
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
local message = st.message or ""
if st.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
if st.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded"
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
local reason = ""
if ready ~= nil and ready.reason ~= nil then
  reason = " (" .. ready.reason .. ")"
end
hs.message = st.phase .. reason .. ": " .. message
return hs
