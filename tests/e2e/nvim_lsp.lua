-- Headless Neovim (0.7+) as a real LSP client of `cllm lsp`, driven by tests/e2e/test_neovim.py.
-- Opens a C file of a small workspace, runs cllm.trainWorkspace, waits for the end of $/progress, asks for an
-- inline completion with request_sync and writes everything it saw as JSON to $CLLM_NVIM_OUT, then quits.
local env = vim.fn.environ()
local report = { progress = {}, activity = 0, messages = {} }

local function finish(failure)
  report.failure = failure
  local file = io.open(env.CLLM_NVIM_OUT, "w")
  file:write(vim.fn.json_encode(report))
  file:close()
  vim.cmd("qall!")
end

local function run()
  local done = false
  local client_id = vim.lsp.start_client({
    name = "cllm",
    cmd = vim.fn.json_decode(env.CLLM_NVIM_CMD),
    root_dir = env.CLLM_NVIM_ROOT,
    init_options = vim.fn.json_decode(env.CLLM_NVIM_OPTIONS),
    handlers = {
      ["$/progress"] = function(_, params)
        table.insert(report.progress, { kind = params.value.kind, message = params.value.message })
        if params.value.kind == "end" then
          done = true
        end
      end,
      ["cllm/sphereActivity"] = function()
        report.activity = report.activity + 1
      end,
      ["window/showMessage"] = function(_, params)
        table.insert(report.messages, params.message)
      end,
    },
  })
  if not client_id then
    return finish("vim.lsp.start_client failed")
  end
  vim.cmd("edit " .. vim.fn.fnameescape(env.CLLM_NVIM_FILE))
  local bufnr = vim.api.nvim_get_current_buf()
  vim.lsp.buf_attach_client(bufnr, client_id)
  local client = vim.lsp.get_client_by_id(client_id)
  if not vim.wait(60000, function() return client.initialized end, 50) then
    return finish("the server did not initialize")
  end
  report.capabilities = client.server_capabilities or client.resolved_capabilities

  local train = client.request_sync("workspace/executeCommand",
    { command = "cllm.trainWorkspace", arguments = {} }, 30000, bufnr)
  if not train or train.err then
    return finish("trainWorkspace failed: " .. vim.inspect(train))
  end
  report.train = train.result
  if not vim.wait(300000, function() return done end, 100) then
    return finish("training did not end")
  end

  local line = tonumber(env.CLLM_NVIM_LINE)
  local character = tonumber(env.CLLM_NVIM_CHARACTER)
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = line, character = character },
    context = { triggerKind = 1 },
  }
  local inline = client.request_sync("textDocument/inlineCompletion", params, 30000, bufnr)
  if not inline or inline.err then
    return finish("inlineCompletion failed: " .. vim.inspect(inline))
  end
  report.inline = inline.result
  local status = client.request_sync("workspace/executeCommand", { command = "cllm.status" }, 30000, bufnr)
  report.status = status and status.result
  client.stop()
  vim.wait(10000, function() return client.is_stopped() end, 50)
  finish(nil)
end

local ok, err = pcall(run)
if not ok then
  finish("lua error: " .. tostring(err))
end
