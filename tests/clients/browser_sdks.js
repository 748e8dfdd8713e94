// The OpenAI and Anthropic SDKs in a page on another origin, as an app that calls the API straight
// from the browser does (dangerouslyAllowBrowser). Each request carries the SDK's own headers
// (x-stainless-*, anthropic-version, x-api-key, an Idempotency-Key), so the preflight must allow
// them; the stream's id and the text are read as the page would read them.
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";

window.runClients = async (base, prompt) => {
  const openai = new OpenAI({
    baseURL: `${base}/v1`, apiKey: "test-key", dangerouslyAllowBrowser: true, maxRetries: 0,
  });
  const request = { model: "echo", stream: true, messages: [{ role: "user", content: prompt }] };
  const { data: chunks, response } = await openai.chat.completions
    .create(request, { idempotencyKey: "browser-1" })
    .withResponse();
  let openaiText = "";
  for await (const chunk of chunks) openaiText += chunk.choices[0]?.delta?.content ?? "";

  const anthropic = new Anthropic({
    baseURL: base, apiKey: "test-key", dangerouslyAllowBrowser: true, maxRetries: 0,
  });
  const message = anthropic.messages.stream({
    model: "echo", max_tokens: 1024, messages: [{ role: "user", content: prompt }],
  });
  let anthropicText = "";
  message.on("text", (text) => { anthropicText += text; });
  const final = await message.finalMessage();
  return {
    openai: openaiText,
    streamId: response.headers.get("x-stream-id"),
    anthropic: anthropicText,
    stopReason: final.stop_reason,
  };
};
