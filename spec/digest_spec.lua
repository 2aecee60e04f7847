-- Known answers for the core's SHA-256 (FIPS 180-4 examples, and the lengths around a block's padding)
-- and base64 (RFC 4648 section 10), one-shot, in pieces, and through the file sink.
require "spec.helpers"
local core = require "clicktocall.core"

local function sha(s, step)
  local hasher = core.sha256()
  step = step or #s
  if #s == 0 then return hasher:hex() end
  for i = 1, #s, step do hasher:update(s:sub(i, i + step - 1)) end
  return hasher:hex()
end

describe("SHA-256", function()
  local KNOWN = {
    { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    { ("a"):rep(55), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
    { ("a"):rep(56), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
    { ("a"):rep(63), "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34" },
    { ("a"):rep(64), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
    { ("a"):rep(65), "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0" },
    { ("a"):rep(119), "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb" },
    { ("a"):rep(120), "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c" },
    { ("a"):rep(128), "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e" },
  }

  for _, k in ipairs(KNOWN) do
    it(("of %d bytes, whole and in pieces of 1, 3, 64 and 65"):format(#k[1]), function()
      assert.equal(k[2], sha(k[1]))
      for _, step in ipairs { 1, 3, 64, 65 } do
        assert.equal(k[2], sha(k[1], step))
      end
    end)
  end

  it("of one million 'a' (FIPS 180-4)", function()
    assert.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", sha(("a"):rep(1000000), 4096))
  end)

  it("of every byte value, as the file sink computes it", function()
    local data = ""
    for i = 0, 255 do data = data .. string.char(i) end
    data = data:rep(3)
    local path = os.tmpname()
    os.remove(path)
    local sink = assert(core.file_sink(path))
    for i = 1, #data, 100 do assert(sink:write(data:sub(i, i + 99))) end
    local bytes, hex = sink:finish()
    os.remove(path)
    assert.equal(768, bytes)
    assert.equal("f3a25aa93aa2fbba28d79260535bbd6a5eb0fc1c24a8b0f04e12b484c1dfe363", hex)
  end)

  it("hex() can be asked twice and the hasher goes on", function()
    local hasher = core.sha256()
    hasher:update("ab")
    assert.equal(hasher:hex(), hasher:hex())
    hasher:update("c")
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hasher:hex())
  end)
end)

describe("base64 (RFC 4648 section 10)", function()
  for _, k in ipairs {
    { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
    { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
  } do
    it(("%q -> %q"):format(k[1], k[2]), function()
      assert.equal(k[2], core.base64(k[1]))
    end)
  end

  it("uses the standard alphabet (+ and /) for every 6-bit value", function()
    assert.equal("+/+/", core.base64("\251\255\191"))
    assert.equal("AAAA", core.base64("\0\0\0"))
  end)
end)
