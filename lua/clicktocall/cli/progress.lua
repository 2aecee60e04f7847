--- The archive's progress on stderr: a bar redrawn in place when stderr is a
-- terminal, one plain line a recording otherwise (logs, cron mail).
local floor = math.floor
local format = string.format
local rep = string.rep

local M = { _VERSION = require "clicktocall.version" }

--- bytes(n) -> "8.0 KiB"
function M.bytes(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do
    n, i = n / 1024, i + 1
  end
  return i == 1 and format("%d B", n) or format("%.1f %s", n, units[i])
end

--- duration(s) -> "1:05" / "1:02:05" / "--:--" when unknown
function M.duration(s)
  if not s or s ~= s or s < 0 or s == math.huge then
    return "--:--"
  end
  s = floor(s + 0.5)
  local h, m = floor(s / 3600), floor(s / 60) % 60
  if h > 0 then
    return format("%d:%02d:%02d", h, m, s % 60)
  end
  return format("%d:%02d", m, s % 60)
end

local bar = {}
bar.__index = bar

-- one line: [#####.....] done/total  bytes  rate  time left  failures. With an upload (archive --upload), a
-- recording is done once the store took it: "done/total uploaded"; the bytes are those downloaded.
function bar:line()
  local elapsed = self.clock() - self.started
  local rate = elapsed > 0 and self.bytes / elapsed or 0
  -- a failed recording is finished too: it counts toward the bar and the time left
  local finished = self.done + self.failed
  local left
  if self.total and finished > 0 and self.total >= finished then
    left = elapsed / finished * (self.total - finished)
  end
  local frac = (self.total and self.total > 0) and math.min(1, finished / self.total) or 0
  local text = format("%d/%s %s  %s  %s/s  %s left  %d failed", self.done,
    self.total and tostring(self.total) or "?", self.upload and "uploaded" or "recordings", M.bytes(self.bytes),
    M.bytes(rate), M.duration(left), self.failed)
  -- a line wider than the terminal would wrap and "\r" could not redraw it:
  -- the bar shrinks first, then goes, then the text is cut
  local room = (self.columns or 80) - 1
  local w = math.min(24, room - #text - 3)
  if w < 5 then
    return text:sub(1, room)
  end
  local fill = floor(frac * w + 0.5)
  return format("[%s%s] %s", rep("#", fill), rep(".", w - fill), text)
end

function bar:draw(force)
  if not self.tty then
    return
  end
  local now = self.clock()
  if not force and now - self.drawn < 0.1 then
    return
  end
  self.drawn = now
  -- \r and "erase to end of line": the bar stays on one line
  self.fh:write("\r", self:line(), "\27[K")
  self.fh:flush()
end

--- p:file(entry): one recording is safely on disk
function bar:file(entry)
  self.downloaded = self.downloaded + 1
  if not self.upload then
    self.done = self.done + 1
  end
  self.bytes = self.bytes + (tonumber(entry.bytes) or 0)
  if self.tty then
    self:draw(self.total ~= nil and self.done >= self.total)
  else
    self.fh:write(format("archived %d/%s %s (%d bytes)\n", self.downloaded,
      self.total and tostring(self.total) or "?", tostring(entry.file or entry.path), tonumber(entry.bytes) or 0))
    self.fh:flush()
  end
end

--- p:uploaded(url): the store took one recording (archive --upload)
function bar:uploaded(url)
  self.done = self.done + 1
  if self.tty then
    self:draw(self.total ~= nil and self.done >= self.total)
  else
    self.fh:write(format("uploaded %d/%s %s\n", self.done, self.total and tostring(self.total) or "?",
      tostring(url)))
    self.fh:flush()
  end
end

function bar:set_failed(n)
  if n ~= self.failed then
    self.failed = n
    self:draw(true)
  end
end

function bar:set_total(n)
  self.total = n
  self:draw(true)
end

--- p:finish(): the bar's last state stays on screen, the cursor on a new line
function bar:finish()
  if self.tty and not self.finished then
    self:draw(true)
    self.fh:write("\n")
    self.fh:flush()
  end
  self.finished = true
end

--- columns() -> the terminal's width, from $COLUMNS or `tput cols` (which asks
-- the terminal on stderr when stdout is a pipe), else nil
function M.columns(getenv)
  local n = tonumber((getenv or os.getenv)("COLUMNS") or "")
  if n and n > 0 then
    return n
  end
  local p = io.popen("tput cols 2>/dev/null")
  if p then
    n = tonumber(p:read("*l") or "")
    p:close()
  end
  return (n and n > 0) and n or nil
end

--- new{ fh =, tty =, total =, clock =, columns =, upload = } -> progress
function M.new(o)
  local clock = o.clock or os.time
  local now = clock()
  return setmetatable({
    fh = o.fh, tty = o.tty, total = o.total, clock = clock, started = now, drawn = -math.huge,
    columns = o.columns, upload = o.upload == true,
    done = 0, downloaded = 0, bytes = 0, failed = 0,
  }, bar)
end

return M
