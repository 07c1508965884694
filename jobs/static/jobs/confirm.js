/* A form with data-confirm asks before it is sent (the admin's Cancel buttons); the page's policy
   allows no inline script, so the question is asked from here, for forms present now or later
   (the overview swaps its sections in place). */
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
